"""The `auditq` command line (typer + rich). Errors are one line on stderr with a distinct exit code."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from auditq import __version__
from auditq.errors import EXIT_MEASURE, AuditqError, InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Audit whether an unlearned LLM stays unlearned in the formats it is deployed in.")
err = Console(stderr=True)
out = Console()

DEFAULT_FORMATS = "fp,rtn8,rtn4"


def _split_list(values: list[str]) -> tuple[str, ...]:
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


class RichEvents:
    """Progress bars on stderr for quantizing and probing."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=err, transient=True, disable=quiet)

    def stage(self, description: str, total: int):
        self.progress.start()
        task = self.progress.add_task(description, total=total)
        self._task = task
        return lambda n=1: self.progress.advance(task, n)

    def note(self, message: str) -> None:
        if not self.quiet and hasattr(self, "_task"):
            self.progress.update(self._task, description=message)

    def say(self, message: str) -> None:
        if not self.quiet:
            err.print(f"[dim]{message}[/]", highlight=False)

    def close(self) -> None:
        self.progress.stop()


DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N."
DTYPE_HELP = ("auto (on CUDA the checkpoint's dtype; on CPU float32 unless it would not fit, then bfloat16), "
              "float32, bfloat16 or float16.")
DEVICE_MAP_HELP = "auto: spread a model larger than one GPU over every visible GPU (accelerate)."
MAX_BATCH_TOKENS_HELP = "Padded tokens per forward pass (rows × longest sequence); sequences are batched longest first."


def _compute(device: str, dtype: str, device_map: Optional[str]):
    """--device/--dtype/--device-map parsed now (exit 2 on a typo), resolved before weights are read."""
    from auditq.checkpoint.placement_flags import ComputeRequest, parse_device, parse_device_map, parse_dtype

    return ComputeRequest(device=parse_device(device), dtype=parse_dtype(dtype), device_map=parse_device_map(device_map))


def _set_threads(threads: Optional[int]) -> None:
    import torch

    torch.set_num_threads(threads or max(1, min(4, os.cpu_count() or 1)))


def run_check(base: Path, unlearned: Path, *, retrain: Optional[Path], reference: Optional[Path], suite: Optional[Path],
              formats: tuple[str, ...], probes: tuple[str, ...], out_dir: Optional[Path], seed: int, batch_size: int,
              config_file: Optional[Path], thresholds: list[str], severities: list[str], allow_inconclusive: bool,
              trust_remote_code: bool, quiet: bool, settings: dict, artifacts: list[Path] = (),
              base_artifacts: list[Path] = (), report_formats: tuple[str, ...] = (), fail_on: Optional[str] = None, waivers_file: Optional[Path] = None,
              use_cache: bool = True, threads: Optional[int] = None, force: bool = False, verify_cache: int = 0,
              out_inside: Optional[Path] = None, compute=None, max_batch_tokens: Optional[int] = 4096) -> int:
    """Shared by `check`, `demo` and `remediate`: run an audit, print it, write reports, return the exit code."""
    from auditq.validate.inputs import CheckInputs, validate_check

    # auditq.validate.inputs: every input is checked before torch/transformers are imported or weights are read
    validated = validate_check(CheckInputs(
        base=base, unlearned=unlearned, suite=suite, retrain=retrain, reference=reference, formats=tuple(formats),
        probes=tuple(probes), out=None if out_dir is None else str(out_dir), force=force, config_file=config_file,
        thresholds=tuple(thresholds), severities=tuple(severities), fail_on=fail_on,
        allow_inconclusive=allow_inconclusive, report_formats=tuple(report_formats), waivers_file=waivers_file,
        artifacts=tuple(artifacts), base_artifacts=tuple(base_artifacts), settings=dict(settings),
        use_cache=use_cache, verify_cache=verify_cache, out_inside=out_inside))
    if threads is not None or "torch" not in sys.modules:  # demo and remediate set threads themselves
        _set_threads(threads)
    from auditq.audit.pipeline import AuditRequest, run_audit
    from auditq.checkpoint.integrity import check_tensor_names
    from auditq.report import write_reports
    from auditq.report.compliance import make_cache
    from auditq.report.samples import render_samples
    from auditq.report.terminal import print_report

    for role, path in (("base", base), ("unlearned", unlearned), ("retrain", retrain), ("reference", reference)):
        if path is not None:  # before any weights load: transformers would random-initialise a missing tensor
            check_tensor_names(Path(path), role, trust_remote_code)
    config, fail_on, writers, waivers, out_dir = (validated.config, validated.fail_on, validated.writers,
                                                  validated.waivers, validated.out)
    extra = tuple(_artifact_formats(artifacts, base_artifacts))
    request = AuditRequest(
        base=base, unlearned=unlearned, retrain=retrain, reference=reference,
        suite=validated.suite_dir, formats=formats, probes=probes, config=config, seed=seed,
        batch_size=batch_size, trust_remote_code=trust_remote_code, allow_inconclusive=allow_inconclusive,
        extra_formats=extra, fail_on=fail_on, waivers=waivers, cache=make_cache(use_cache), **settings,
        **({"compute": compute} if compute is not None else {}), max_batch_tokens=max_batch_tokens,
    )
    events = RichEvents(quiet)
    try:
        outcome = run_audit(request, events)
        report = outcome.report
        if verify_cache and request.cache is not None:
            from auditq.cache.verify import verify_cached_rows

            verified = verify_cached_rows(request.cache, verify_cache, seed, None if quiet else err)
            report = replace(report, cache={**report.cache, "verified": verified})
    finally:
        events.close()
    print_report(report, out)
    if request.cache is not None and request.cache.tampered:
        err.print(f"auditq: warning: {len(request.cache.tampered)} cache entr(y/ies) failed their sha256/HMAC check "
                  "(edited or forged); they were dropped and measured again", highlight=False, markup=False)
    if request.cache is not None and not quiet:
        from auditq.report.escape import term

        err.print(f"[dim]result cache: {request.cache.hits} probe result(s) re-used, {request.cache.misses} measured "
                  f"({term(request.cache.directory)})[/]", highlight=False)
    if out_dir is not None:
        paths = write_reports(out_dir, report, writers=writers, replace=True,
                              extra_files={"samples.jsonl": render_samples(outcome.runs)})
        out.print(f"reports written: {', '.join(str(p) for p in paths)}")
    return report.exit_code


def _artifact_formats(artifacts, base_artifacts=()) -> list:
    """One extra row per --artifact file; a --base-artifact of the same kind is paired in order."""
    formats = []
    base_by_index = list(base_artifacts)
    if len(base_by_index) > len(artifacts):
        raise InputError("--base-artifact given without a matching --artifact")
    for index, path in enumerate(artifacts):
        base = base_by_index[index] if index < len(base_by_index) else None
        role_paths = {"base": Path(base)} if base else None
        if Path(path).is_dir():  # a GPTQ or AWQ checkpoint directory
            from auditq.formats.gptq import QuantizedArtifact

            formats.append(QuantizedArtifact.from_path(Path(path), role_paths=role_paths))
        elif str(path).endswith(".gguf"):
            from auditq.formats.gguf import GGUFArtifact

            formats.append(GGUFArtifact.from_path(Path(path), role_paths=role_paths))
        else:
            raise InputError(f"--artifact {path}: unsupported artifact (expected a .gguf file or a GPTQ/AWQ checkpoint dir)")
    return formats


@app.command()
def check(
    base: Path = typer.Argument(..., help="Original model: a Hugging Face checkpoint dir with safetensors weights."),
    unlearned: Path = typer.Argument(..., help="Unlearned model, same architecture and tokenizer as BASE."),
    retrain: Optional[Path] = typer.Option(None, help="Model trained without the forget set: the gold reference."),
    reference: Optional[Path] = typer.Option(None, help="Reference model for the reference-loss attack (default: BASE in the same format)."),
    suite: Optional[Path] = typer.Option(None, help="Probe suite dir (default: the bundled demo suite)."),
    formats: list[str] = typer.Option([DEFAULT_FORMATS], "--formats", "-f", help="Comma-separated formats: fp, rtnN[:gG][:emb][:nohead], gguf:q4_0, fp8, prune:wanda:0.5, relearn:retain[:lora=8], A+B (stacked), ..."),
    probes: list[str] = typer.Option(["verbmem,knowmem,mia,utility"], "--probes", help="Comma-separated probes."),
    artifact: list[Path] = typer.Option([], help="An existing quantized file of the unlearned model (e.g. .gguf) to score as one more row."),
    base_artifact: list[Path] = typer.Option([], help="The matching quantized file of BASE (default: BASE quantized by auditq to the same type)."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Write report.json, samples.jsonl, report.md and junit.xml here (a fresh directory: an existing one is replaced as a whole; see --force)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out that holds files auditq did not write."),
    verify_cache: int = typer.Option(0, "--verify-cache", help="Re-measure N random cached rows and exit 3 if any differs (release gates: this or --no-cache)."),
    seed: int = typer.Option(0, help="Seed for bootstrap intervals and any sampling."),
    batch_size: int = typer.Option(64, min=1, help="At most this many sequences per forward pass (--max-batch-tokens usually binds first)."),
    max_batch_tokens: int = typer.Option(4096, min=1, help=MAX_BATCH_TOKENS_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch CPU threads (default: min(4, cores))."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="auditq.toml to use instead of ./auditq.toml."),
    threshold: list[str] = typer.Option([], help="Override a threshold: CHECK=VALUE (forget_retention, recovery, privleak, utility)."),
    severity: list[str] = typer.Option([], help="Override a severity: CHECK=error|warn."),
    allow_inconclusive: bool = typer.Option(False, help="Do not fail the gate on INCONCLUSIVE verdicts (= --fail-on fail)."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 on: fail | inconclusive (default) | never. Errors still exit 2/3."),
    report_format: list[str] = typer.Option([], "--format", help="Extra report files in --out: sarif, html (json, md, junit always)."),
    waivers: Optional[Path] = typer.Option(None, "--waivers", help="Waivers file (default: ./auditq-waivers.toml if present)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Measure everything; do not read or write the result cache."),
    trust_remote_code: bool = typer.Option(False, help="Allow custom model code from the checkpoint dirs (off by default)."),
    prefix_tokens: Optional[int] = typer.Option(None, help="VerbMem prompt length in tokens (suite default, else 32)."),
    max_new_tokens: Optional[int] = typer.Option(None, help="VerbMem continuation length (suite default, else 64)."),
    answer_tokens: Optional[int] = typer.Option(None, help="KnowMem answer length (suite default, else 32)."),
    mink_k: Optional[float] = typer.Option(None, help="Min-K% fraction k (default 0.4)."),
    calibration: Optional[str] = typer.Option(None, help="GPTQ/AWQ calibration: a text file (one sample a line), or 'forget' as a stress option (default: the suite's generic calibration text)."),
    protocol: str = typer.Option("auditq", help="Probe protocol: auditq (default) or muse (VerbMem/KnowMem exactly as MUSE builds them; see README)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Quantize BASE and UNLEARNED to every format, probe them, and gate on the verdicts."""
    compute = _compute(device, dtype, device_map)
    from auditq.formats import expand_presets  # -f paper-code / paper-text (auditq.formats.PRESETS)
    code = run_check(base, unlearned, retrain=retrain, reference=reference, suite=suite, formats=expand_presets(_split_list(formats)),
                     probes=_split_list(probes), out_dir=out_dir, seed=seed, batch_size=batch_size,
                     config_file=config_file, thresholds=threshold, severities=severity,
                     allow_inconclusive=allow_inconclusive, trust_remote_code=trust_remote_code, quiet=quiet,
                     settings={"prefix_tokens": prefix_tokens, "max_new_tokens": max_new_tokens,
                               "answer_tokens": answer_tokens, "mink_k": mink_k, "calibration": calibration,
                               "protocol": protocol},
                     artifacts=artifact, base_artifacts=base_artifact, report_formats=tuple(report_format), fail_on=fail_on, waivers_file=waivers,
                     use_cache=not no_cache, threads=threads, force=force, verify_cache=verify_cache,
                     compute=compute, max_batch_tokens=max_batch_tokens)
    raise typer.Exit(code)


@app.command()
def demo(
    unlearned: str = typer.Option("fragile", help="Which demo model to audit: fragile (the planted failure), honest, or retrain."),
    formats: list[str] = typer.Option([DEFAULT_FORMATS], "--formats", "-f", help="Comma-separated formats."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Write the four report files here (replaced as a whole)."),
    rebuild: bool = typer.Option(False, help="Rebuild the cached demo models."),
    seed: int = typer.Option(0),
    threads: Optional[int] = typer.Option(None, min=1),
    protocol: str = typer.Option("auditq", help="Probe protocol: auditq (default) or muse."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Build (once, cached) tiny demo models and audit the planted failure: forgotten at fp/rtn8, back at rtn4."""
    from auditq.demo.build import build_demo

    _set_threads(threads)
    compute = _compute(device, dtype, device_map)
    choices = {"fragile", "honest", "retrain"}
    if unlearned not in choices:
        raise InputError(f"--unlearned {unlearned!r}: expected one of {', '.join(sorted(choices))}")
    from auditq.report.outdir import check_out_dir

    check_out_dir(out_dir, [])  # before building the demo models (minutes); run_check checks overlaps again
    out.print(DEMO_EXPLANATION)
    models = build_demo(force=rebuild, log=(lambda m: None) if quiet else (lambda m: err.print(f"[dim]{m}[/]")))
    target = getattr(models, unlearned)
    out.print(f"auditing [bold]{unlearned}[/] model {target} against base {models.base} (retrain {models.retrain})")
    code = run_check(models.base, target, retrain=models.retrain, reference=None, suite=models.suite,
                     formats=_split_list(formats), probes=("verbmem", "knowmem", "mia", "utility"), out_dir=out_dir,
                     seed=seed, batch_size=16, config_file=None, thresholds=[], severities=[],
                     allow_inconclusive=False, trust_remote_code=False, quiet=quiet, settings={
                         "prefix_tokens": None, "max_new_tokens": None, "answer_tokens": None, "mink_k": None,
                         "protocol": protocol},
                     compute=compute)
    raise typer.Exit(code)


DEMO_EXPLANATION = (
    "[bold]auditq demo[/] — the failure of Zhang et al. (ICLR 2025) on a 1M-parameter model.\n"
    "In a 7B model, unlearning moves weights by ~1e-4 of an int4 step, so 4-bit rounding maps the original and the\n"
    "unlearned weights onto the same codes and the forgotten data comes back. A model this small must move ~0.3 of a\n"
    "step to forget, so that would not happen by itself. The 'fragile' model simulates the large-model regime honestly:\n"
    "ordinary gradient-ascent + retain-loss unlearning, but after every step each Linear weight is projected back into\n"
    "the int4 round-to-nearest cell of the original weight. Expect forgetting at fp and rtn8, FAIL (recovery) at rtn4.\n"
    "Retention counts base's forget score as 1 and base's score on never-trained holdout records as 0; PrivLeak is\n"
    "MUSE's (negative = under-unlearned), on 133 forget vs 133 holdout texts (QA pairs scored as texts too)."
)



@app.command()
def remediate(
    base: Path = typer.Argument(..., help="The ORIGINAL model (before any unlearning): a Hugging Face checkpoint dir. Never written to."),
    suite: Optional[Path] = typer.Option(None, help="Probe suite whose forget split is unlearned and whose retain split is kept (default: the bundled demo suite)."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="NEW_DIR for the remediated checkpoint; must not exist or be empty (see --force)."),
    method: str = typer.Option("sure", help="sure (saliency-masked unlearning, large lr), or ga / npo (the same loop on every nn.Linear weight, no mask)."),
    forget_loss: Optional[str] = typer.Option(None, help="SURE's forget loss: ga or npo (β = 0.1). Default: the preset's (ga)."),
    retain_loss: Optional[str] = typer.Option(None, help="Retain term: gdr (NLL on retain) or klr (KL to the original on retain). Default: the preset's."),
    preset: str = typer.Option("auto", help="Hyper-parameter defaults: default (real models: lr 1e-4, GA + KLR), demo (tiny models: lr 1e-3, GA + 5·KLR), or auto (demo below 10M parameters)."),
    lr: Optional[float] = typer.Option(None, help="AdamW learning rate (default: the preset's; 1e-4 for real models)."),
    steps: Optional[int] = typer.Option(None, min=1, help="Step budget (default: the preset's)."),
    percentile: Optional[float] = typer.Option(None, min=0.0, max=100.0, help="SURE mask: train modules whose saliency is at or above this percentile (default 90, the top 10%; the reference code uses 99, 95 and 90 in three places)."),
    granularity: Optional[str] = typer.Option(None, help="Saliency per module (default, as the paper) or per output row (as the reference code)."),
    check_every: Optional[int] = typer.Option(None, min=1, help="Measure forget KnowMem/VerbMem at fp every K steps (default: the preset's: 10)."),
    target: Optional[float] = typer.Option(None, min=0.0, help="Stop once the 95% upper bound of forget KnowMem and VerbMem retention at fp is at most this (default: the re-check's own forget_retention test at fp)."),
    privleak_target: Optional[float] = typer.Option(None, help="...then stop once the estimated PrivLeak (%, MUSE's sign: negative = under-unlearned) has risen to at least this (default 0; 'inf' stops on KnowMem/VerbMem alone)."),
    retain_weight: Optional[float] = typer.Option(None, min=0.0, help="Weight of the retain term (default: the preset's)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Forget and retain sequences per step (default: the preset's)."),
    seed: int = typer.Option(0, help="Seed for batching and the re-check's bootstrap."),
    formats: list[str] = typer.Option([DEFAULT_FORMATS], "--formats", "-f", help="Formats the re-check audits (as in `auditq check`)."),
    retrain: Optional[Path] = typer.Option(None, help="Model trained without the forget set: passed to the re-check, and its fp retention and Min-K% AUC set the stop targets."),
    force: bool = typer.Option(False, help="Replace a non-empty --out (only once the new checkpoint is complete)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Compute and print the saliency map and the plan; train nothing, write nothing."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="auditq.toml for the re-check's thresholds."),
    threshold: list[str] = typer.Option([], help="Override a re-check threshold: CHECK=VALUE."),
    severity: list[str] = typer.Option([], help="Override a re-check severity: CHECK=error|warn."),
    allow_inconclusive: bool = typer.Option(False, help="Do not fail the re-check's gate on INCONCLUSIVE verdicts."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch CPU threads (default: min(4, cores))."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    trust_remote_code: bool = typer.Option(False, help="Allow custom model code from the checkpoint dirs (off by default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Re-unlearn from BASE so the result stays unlearned once quantized (SURE), write NEW_DIR, and re-check it.

    Like `pip-audit --fix`: the exit code is the re-check's (0 only if it passes); --dry-run prints the plan.
    """
    from auditq.remediate.command import RemediateOptions, run_remediate
    from auditq.remediate.validate import validate_inputs

    if out_dir is not None and not out_dir.strip():
        raise InputError("--out '': expected a directory path for the remediated checkpoint")
    options = RemediateOptions(
        base=base, suite=suite, out=None if out_dir is None else Path(out_dir), method=method, forget_loss=forget_loss, retain_loss=retain_loss,
        preset=preset, lr=lr, steps=steps, percentile=percentile, granularity=granularity, check_every=check_every,
        target=target, privleak_target=privleak_target, retain_weight=retain_weight, batch_size=batch_size,
        seed=seed, formats=_split_list(formats), retrain=retrain, force=force, dry_run=dry_run,
        config_file=config_file, thresholds=tuple(threshold), severities=tuple(severity),
        allow_inconclusive=allow_inconclusive, trust_remote_code=trust_remote_code, quiet=quiet,
        compute=_compute(device, dtype, device_map))
    validated = validate_inputs(options)  # exit 2 before torch is imported (auditq.remediate.validate)
    _set_threads(threads)
    raise typer.Exit(run_remediate(options, out, err, run_check, validated))

@app.command("report")
def report_cmd(
    report_json: Path = typer.Argument(..., help="A report.json written by `auditq check --out`."),
    report_format: list[str] = typer.Option([], "--format", help="md, html, sarif, junit, json (comma-separated; default: md,html,sarif,junit)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory to write to (default: beside report.json)."),
) -> None:
    """Re-render report files from report.json without re-measuring anything."""
    from auditq.report.compliance import rerender

    paths = rerender(report_json, report_format, out_dir)
    out.print(f"reports written: {', '.join(str(p) for p in paths)}")


cache_app = typer.Typer(no_args_is_help=True, help="The result cache (probe outputs re-used across runs).")
app.add_typer(cache_app, name="cache")


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every cached probe result (cached demo models are kept)."""
    from auditq.cache.store import ResultCache

    cache = ResultCache()
    count, size = cache.clear()
    out.print(f"removed {count} cached result(s), {size / 1e6:.1f} MB, from {cache.directory}")


@cache_app.command("info")
def cache_info() -> None:
    """Where the result cache is and how big it is."""
    from auditq.cache.store import ResultCache

    cache = ResultCache()
    count, size = cache.size()
    out.print(f"{cache.directory}: {count} cached result(s), {size / 1e6:.1f} MB")


@app.command()
def version() -> None:
    """Print the auditq version."""
    out.print(__version__)


def main() -> None:
    """Entry point: one-line errors with exit 2 (input) or 3 (could not measure), never a traceback.

    Usage errors are typer's own (exit 2); everything else is caught here. Ctrl-C is handled by
    auditq.interrupt (installed by auditq.entry before this module is imported): exit 130 at any moment.
    """
    import logging

    from auditq import interrupt
    from auditq.interrupt import Interrupted, interrupted

    for noisy in ("torchao", "torch.utils._pytree"):  # optional engines' import chatter
        logging.getLogger(noisy).setLevel(logging.ERROR)
    interrupt.install()  # in-process callers (tests) that skip auditq.entry
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        result = app(standalone_mode=False, prog_name="auditq")
        sys.exit(result if isinstance(result, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except usage_error as exc:  # click's usage errors as one line too (its default is a multi-line panel)
        message = exc.format_message()
        if message:  # an empty message: `auditq` or `auditq cache` alone, help already printed
            where = exc.ctx.command_path if exc.ctx is not None else "auditq"
            err.print(f"auditq: error: {message} (see `{where} --help`)", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except Interrupted:
        interrupt.tell()
        sys.exit(130)
    except AuditqError as exc:
        if interrupted():
            sys.exit(130)
        err.print(f"auditq: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # an unexpected crash: still one line and exit 3
        if interrupted():  # Ctrl-C inside an import can arrive as any exception
            sys.exit(130)
        if os.environ.get("AUDITQ_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        err.print(f"auditq: internal error: {type(exc).__name__}: {first} (set AUDITQ_DEBUG=1 for a traceback)",
                  highlight=False, markup=False, soft_wrap=True)
        sys.exit(EXIT_MEASURE)


if __name__ == "__main__":
    main()
