"""`auditq check`: quantize BASE and UNLEARNED to every format, probe them, and gate on the verdicts.

The command line becomes one CheckOptions (auditq.audit.request), validated once by the light stage before
torch is imported (auditq.validate.inputs), then handed to the audit core (auditq.audit.check).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from auditq.audit.request import CheckOptions
from auditq.cli.common import (
    DEFAULT_FORMATS,
    DEVICE_HELP,
    DEVICE_MAP_HELP,
    DTYPE_HELP,
    EXECUTOR_HELP,
    MAX_BATCH_TOKENS_HELP,
    RAY_ADDRESS_HELP,
    RAY_TIMEOUT_HELP,
    compute_request,
    err,
    out,
    set_threads,
    split_list,
)
from auditq.formats import expand_presets  # -f paper-code / paper-text (auditq.formats.PRESETS)


def run_check(options: CheckOptions) -> int:
    """Shared by `check` and `demo`: validate, run the audit, print it, write reports, return the exit code."""
    from auditq.validate.inputs import validate_check

    # auditq.validate.inputs: every input is checked before torch/transformers are imported or weights are read
    validated = validate_check(options)
    if options.threads is not None or "torch" not in sys.modules:  # demo sets threads itself
        set_threads(options.threads)
    from auditq.report.publish import audit_and_publish

    return audit_and_publish(options, validated, out, err)


def check(
    base: Path = typer.Argument(..., metavar="BASE", help="Original model: a Hugging Face checkpoint dir with safetensors weights."),
    unlearned: Path = typer.Argument(..., metavar="UNLEARNED", help="Unlearned model, same architecture and tokenizer as BASE."),
    retrain: Optional[Path] = typer.Option(None, help="Model trained without the forget set: the gold reference."),
    reference: Optional[Path] = typer.Option(None, help="Model that never saw the forget set, for the reference-loss attack (default: --retrain in the same format; with neither, that attack is not run)."),
    suite: Optional[Path] = typer.Option(None, help="Probe suite dir (default: the bundled demo suite)."),
    formats: list[str] = typer.Option([DEFAULT_FORMATS], "--formats", "-f", metavar="FORMATS", help="Comma-separated formats (repeatable): fp; bf16, fp16; rtnN[:gG][:emb][:nohead]; fp8, fp8:channel; gptq4, awq4; bnb:nf4|fp4|int8; gguf:q4_k_m|q4_0|q8_0|...; prune:wanda:0.5; relearn:retain[:lora=8]; A+B stacks; presets paper-code, paper-text. See docs/formats-and-attacks.md."),
    probes: list[str] = typer.Option(["verbmem,knowmem,mia,utility"], "--probes", metavar="PROBES", help="Comma-separated probes: verbmem, knowmem, mia, utility; mcq (multiple choice), tofu (TOFU metrics): not defaults."),
    artifact: list[Path] = typer.Option([], metavar="PATH", help="An existing quantized file of the unlearned model (e.g. .gguf) to score as one more row."),
    base_artifact: list[Path] = typer.Option([], metavar="PATH", help="The matching quantized file of BASE (default: BASE quantized by auditq to the same type)."),
    served: Optional[str] = typer.Option(None, "--served", metavar="URL", help="An OpenAI-compatible server (llama-cpp-python, vLLM) serving UNLEARNED: audited as one more row, over HTTP (docs/served.md). API key: AUDITQ_API_KEY or OPENAI_API_KEY."),
    served_model: Optional[str] = typer.Option(None, "--served-model", metavar="NAME", help="Model id to audit on --served (default: the only one it lists)."),
    served_base: Optional[str] = typer.Option(None, "--served-base", metavar="URL", help="A server serving BASE (default: BASE measured in process as --served-as)."),
    served_base_model: Optional[str] = typer.Option(None, "--served-base-model", metavar="NAME", help="Model id to audit on --served-base."),
    served_as: str = typer.Option("fp", "--served-as", metavar="FORMAT", help="Format BASE is measured in when it has no endpoint, e.g. gguf:q8_0 for a Q8_0 GGUF server."),
    served_timeout: float = typer.Option(60.0, "--served-timeout", metavar="SECONDS", help="Timeout per HTTP request (429/5xx are retried with backoff)."),
    concurrency: int = typer.Option(4, "--concurrency", metavar="N", help="HTTP requests in flight at once."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Write report.json, samples.jsonl, report.md and junit.xml here (a fresh directory: an existing one is replaced as a whole; see --force)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out that holds files auditq did not write."),
    verify_cache: int = typer.Option(0, "--verify-cache", help="Re-measure N random cached rows and exit 3 if any differs (release gates: this or --no-cache)."),
    seed: int = typer.Option(0, help="Seed for bootstrap intervals and any sampling."),
    seeds: int = typer.Option(1, "--seeds", help="Repeat every stochastic format (relearn, gptq, awq) under this many seeds (--seed, --seed+1, ...); the report gives each row's pass rate."),
    batch_size: int = typer.Option(64, min=1, help="At most this many sequences per forward pass (--max-batch-tokens usually binds first)."),
    max_batch_tokens: int = typer.Option(4096, min=1, help=MAX_BATCH_TOKENS_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch CPU threads (default: min(4, cores))."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="auditq.toml to use instead of ./auditq.toml."),
    threshold: list[str] = typer.Option([], metavar="CHECK=VALUE", help="Override a threshold: CHECK=VALUE (forget_retention, recovery, privleak, utility)."),
    severity: list[str] = typer.Option([], metavar="CHECK=LEVEL", help="Override a severity: CHECK=error|warn."),
    allow_inconclusive: bool = typer.Option(False, "--allow-inconclusive", help="Do not fail the gate on INCONCLUSIVE verdicts (= --fail-on fail)."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 on: fail | inconclusive (default) | never. Errors still exit 2/3."),
    report_format: list[str] = typer.Option([], "--format", metavar="FORMATS", help="Extra report files in --out: sarif, html (json, md, junit always)."),
    waivers: Optional[Path] = typer.Option(None, "--waivers", help="Waivers file (default: ./auditq-waivers.toml if present)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Measure everything; do not read or write the result cache."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom model code from the checkpoint dirs (off by default)."),
    prefix_tokens: Optional[int] = typer.Option(None, help="VerbMem prompt length in tokens (suite default, else 32)."),
    max_new_tokens: Optional[int] = typer.Option(None, help="VerbMem continuation length (suite default, else 64)."),
    answer_tokens: Optional[int] = typer.Option(None, help="KnowMem answer length (suite default, else 32)."),
    mink_k: Optional[float] = typer.Option(None, help="Min-K% fraction k (default 0.4)."),
    calibration: Optional[str] = typer.Option(None, help="GPTQ/AWQ calibration: a text file (one sample a line), or 'forget' as a stress option (default: the suite's generic calibration text)."),
    protocol: str = typer.Option("auditq", help="Probe protocol: auditq (default) or muse (VerbMem/KnowMem exactly as MUSE builds them; see README)."),
    privleak_reference_auc: Optional[float] = typer.Option(None, "--privleak-reference-auc", metavar="AUC", help="PrivLeak's reference AUC without --retrain (default 0.5); MUSE's tables use their retrain AUCs: News 0.4772, Books 0.5393."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    ray_timeout: float = typer.Option(6 * 3600.0, "--ray-timeout", min=1, help=RAY_TIMEOUT_HELP),
) -> None:
    """Quantize BASE and UNLEARNED to every format, probe them, and gate on the verdicts."""
    options = CheckOptions(
        base=base, unlearned=unlearned, retrain=retrain, reference=reference, suite=suite,
        formats=expand_presets(split_list(formats)), probes=split_list(probes), artifacts=tuple(artifact),
        base_artifacts=tuple(base_artifact), out=out_dir, force=force, report_formats=tuple(report_format),
        config_file=config_file, thresholds=tuple(threshold), severities=tuple(severity),
        allow_inconclusive=allow_inconclusive, fail_on=fail_on, waivers_file=waivers, use_cache=not no_cache,
        verify_cache=verify_cache, seed=seed, seeds=seeds, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
        threads=threads, compute=compute_request(device, dtype, device_map), trust_remote_code=trust_remote_code,
        prefix_tokens=prefix_tokens, max_new_tokens=max_new_tokens, answer_tokens=answer_tokens, mink_k=mink_k,
        calibration=calibration, protocol=protocol, quiet=quiet, privleak_reference_auc=privleak_reference_auc,
        served=served, served_model=served_model, served_base=served_base, served_base_model=served_base_model,
        served_as=served_as, served_timeout=served_timeout, concurrency=concurrency, executor=executor,
        ray_address=ray_address, ray_timeout=ray_timeout)
    raise typer.Exit(run_check(options))
