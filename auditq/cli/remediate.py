"""`auditq remediate`: the command line as one RemediateOptions, checked by the light stage before torch is
imported (auditq.remediate.validate), then auditq.remediate.command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from auditq.cli.common import (
    DEFAULT_FORMATS,
    DEVICE_HELP,
    DEVICE_MAP_HELP,
    DTYPE_HELP,
    EXECUTOR_HELP,
    RAY_ADDRESS_HELP,
    RAY_TIMEOUT_HELP,
    compute_request,
    err,
    out,
    set_threads,
    split_list,
)
from auditq.errors import InputError
from auditq.formats import expand_presets  # -f paper-code / paper-text (auditq.formats.PRESETS)


def remediate(
    base: Path = typer.Argument(..., metavar="BASE", help="The ORIGINAL model (before any unlearning): a Hugging Face checkpoint dir. Never written to."),
    suite: Optional[Path] = typer.Option(None, help="Probe suite whose forget split is unlearned and whose retain split is kept (default: the bundled demo suite)."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="NEW_DIR for the remediated checkpoint; must not exist or be empty (see --force)."),
    method: str = typer.Option("sure", help="sure (saliency-masked unlearning, large lr), or ga / npo (the same loop on every nn.Linear weight, no mask)."),
    forget_loss: Optional[str] = typer.Option(None, help="SURE's forget loss: ga or npo (β = 0.1). Default: the preset's (ga)."),
    retain_loss: Optional[str] = typer.Option(None, help="Retain term: gdr (NLL on retain) or klr (KL to the original on retain). Default: the preset's."),
    preset: str = typer.Option("auto", help="Hyper-parameter defaults: default (real models: lr 1e-4, GA + KLR), demo (tiny models: lr 1e-3, GA + 5·KLR), or auto (demo below 10M parameters)."),
    lr: Optional[float] = typer.Option(None, help="AdamW learning rate (default: the preset's; 1e-4 for real models)."),
    steps: Optional[int] = typer.Option(None, min=1, help="Step budget (default: the preset's)."),
    percentile: Optional[float] = typer.Option(None, min=0.0, max=100.0, help="SURE mask: train modules whose saliency is at or above this percentile (default 90, the top 10%; the reference code uses 99, 95 and 90 in three places)."),
    granularity: Optional[str] = typer.Option(None, help="Saliency granularity: module (default, as the paper) or row (each output row, as the reference code)."),
    check_every: Optional[int] = typer.Option(None, min=1, help="Measure forget KnowMem/VerbMem at fp every K steps (default: the preset's: 10)."),
    target: Optional[float] = typer.Option(None, min=0.0, help="Stop once the 95% upper bound of forget KnowMem and VerbMem retention at fp is at most this (default: the re-check's own forget_retention test at fp)."),
    privleak_target: Optional[float] = typer.Option(None, help="Then stop once the estimated PrivLeak (%, MUSE's sign: negative = under-unlearned) has risen to at least this (default 0; a finite number in -100..1000)."),
    retain_weight: Optional[float] = typer.Option(None, min=0.0, help="Weight of the retain term (default: the preset's)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Forget and retain sequences per step (default: the preset's)."),
    seed: int = typer.Option(0, help="Seed for batching and the re-check's bootstrap."),
    formats: list[str] = typer.Option([DEFAULT_FORMATS], "--formats", "-f", metavar="FORMATS", help="Formats the re-check audits (as in `auditq check`)."),
    retrain: Optional[Path] = typer.Option(None, help="Model trained without the forget set: passed to the re-check, and its fp retention and Min-K% AUC set the stop targets."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out (only once the new checkpoint is complete)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Compute and print the saliency map and the plan; train nothing, write nothing."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="auditq.toml for the re-check's thresholds."),
    threshold: list[str] = typer.Option([], metavar="CHECK=VALUE", help="Override a re-check threshold: CHECK=VALUE."),
    severity: list[str] = typer.Option([], metavar="CHECK=LEVEL", help="Override a re-check severity: CHECK=error|warn."),
    allow_inconclusive: bool = typer.Option(False, "--allow-inconclusive", help="Do not fail the re-check's gate on INCONCLUSIVE verdicts."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch CPU threads (default: min(4, cores))."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom model code from the checkpoint dirs (off by default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    executor: str = typer.Option("local", "--executor", help="The re-check's executor. " + EXECUTOR_HELP),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    ray_timeout: float = typer.Option(6 * 3600.0, "--ray-timeout", min=1, help=RAY_TIMEOUT_HELP),
) -> None:
    """Re-unlearn from BASE so the result stays unlearned once quantized (SURE), write NEW_DIR, and re-check it.

    Like `pip-audit --fix`: the exit code is the re-check's (0 only if it passes); --dry-run prints the plan.
    """
    from auditq.remediate.command import RemediateOptions, run_remediate
    from auditq.remediate.validate import validate_inputs

    if out_dir is not None and not out_dir.strip():
        raise InputError("--out '': expected a directory path for the remediated checkpoint")
    options = RemediateOptions(
        base=base, suite=suite, out=None if out_dir is None else Path(out_dir), method=method, forget_loss=forget_loss,
        retain_loss=retain_loss, preset=preset, lr=lr, steps=steps, percentile=percentile, granularity=granularity,
        check_every=check_every, target=target, privleak_target=privleak_target, retain_weight=retain_weight,
        batch_size=batch_size, seed=seed, formats=expand_presets(split_list(formats)), retrain=retrain, force=force, dry_run=dry_run,
        config_file=config_file, thresholds=tuple(threshold), severities=tuple(severity),
        allow_inconclusive=allow_inconclusive, trust_remote_code=trust_remote_code, quiet=quiet,
        compute=compute_request(device, dtype, device_map), threads=threads, executor=executor,
        ray_address=ray_address, ray_timeout=ray_timeout)
    validated = validate_inputs(options)  # exit 2 before torch is imported (auditq.remediate.validate)
    set_threads(threads)
    raise typer.Exit(run_remediate(options, out, err, validated))
