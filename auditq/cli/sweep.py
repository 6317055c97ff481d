"""`auditq sweep BASE CANDIDATE...`: audit many candidates against one BASE (and RETRAIN) and rank them.

The command line becomes one SweepOptions (auditq.sweep.options), validated once by the light stage (every
candidate's audit inputs, --require, --out) before torch is imported, then auditq.sweep.run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from auditq.cli.common import (
    DEFAULT_FORMATS,
    DEVICE_HELP,
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
from auditq.formats import expand_presets


def sweep(
    base: Path = typer.Argument(..., metavar="BASE", help="Original model: a Hugging Face checkpoint dir."),
    candidates: Optional[list[Path]] = typer.Argument(None, metavar="CANDIDATE", help="Unlearned candidates (labelled by their directory name)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="TOML file of [[candidate]] tables with label and path (paths relative to the file)."),
    retrain: Optional[Path] = typer.Option(None, help="Model trained without the forget set (measured once for all candidates)."),
    suite: Optional[Path] = typer.Option(None, help="Probe suite dir (default: the bundled demo suite)."),
    formats: list[str] = typer.Option([DEFAULT_FORMATS], "--formats", "-f", metavar="FORMATS", help="Formats, as in `auditq check`."),
    probes: list[str] = typer.Option(["verbmem,knowmem,mia,utility"], "--probes", metavar="PROBES", help="Probes, as in `auditq check`."),
    require: str = typer.Option("any", "--require", help="Exit 0 when any candidate passes every check (any), or only when all do (all)."),
    out_dir: str = typer.Option(..., "--out", "-o", help="Directory for sweep.json/.md/.html and each candidate's reports in <label>/ (replaced as a whole)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out that holds files auditq did not write."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="auditq.toml to use instead of ./auditq.toml."),
    threshold: list[str] = typer.Option([], metavar="CHECK=VALUE", help="Override a threshold, as in `auditq check`."),
    allow_inconclusive: bool = typer.Option(False, "--allow-inconclusive", help="A candidate with INCONCLUSIVE verdicts may still pass."),
    seed: int = typer.Option(0, help="Seed for bootstrap intervals and any sampling."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch CPU threads (default: min(4, cores))."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom model code from the checkpoint dirs."),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    ray_timeout: float = typer.Option(6 * 3600.0, "--ray-timeout", min=1, help=RAY_TIMEOUT_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Audit every CANDIDATE against BASE (BASE and --retrain measured once) and rank them by robustness."""
    from auditq.sweep.options import SweepOptions, gather_candidates, validate_sweep

    options = SweepOptions(
        base=base, candidates=gather_candidates(tuple(candidates or ()), manifest), out=out_dir, retrain=retrain,
        suite=suite, formats=expand_presets(split_list(formats)), probes=split_list(probes), require=require,
        force=force, config_file=config_file, thresholds=tuple(threshold), allow_inconclusive=allow_inconclusive,
        seed=seed, threads=threads, compute=compute_request(device, dtype, None), trust_remote_code=trust_remote_code,
        executor=executor, ray_address=ray_address, ray_timeout=ray_timeout, quiet=quiet)
    validated = validate_sweep(options)  # exit 2 before torch is imported
    set_threads(threads)
    from auditq.sweep.run import run_sweep

    raise typer.Exit(run_sweep(options, validated, out, err))
