"""`auditq demo`: build (once, cached) tiny demo models and audit the planted failure with `auditq check`'s flow."""

from __future__ import annotations

from typing import Optional

import typer

from auditq.audit.request import CheckOptions
from auditq.cli.check import run_check
from auditq.formats import expand_presets  # -f paper-code / paper-text (auditq.formats.PRESETS)
from auditq.cli.common import (
    DEFAULT_FORMATS,
    DEVICE_HELP,
    DEVICE_MAP_HELP,
    DTYPE_HELP,
    compute_request,
    err,
    out,
    set_threads,
    split_list,
)
from auditq.errors import InputError

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



def demo_options(models, which: str, *, formats: tuple[str, ...], out_dir: Optional[str], seed: int,
                 protocol: str, compute, quiet: bool) -> CheckOptions:
    """The audit `demo` runs: the chosen demo model against base (and retrain), every probe, 16 rows a batch."""
    return CheckOptions(base=models.base, unlearned=getattr(models, which), retrain=models.retrain,
                        suite=models.suite, formats=formats, out=out_dir, seed=seed, batch_size=16,
                        max_batch_tokens=4096, compute=compute, protocol=protocol, quiet=quiet)


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

    set_threads(threads)
    compute = compute_request(device, dtype, device_map)
    choices = {"fragile", "honest", "retrain"}
    if unlearned not in choices:
        raise InputError(f"--unlearned {unlearned!r}: expected one of {', '.join(sorted(choices))}")
    from auditq.report.outdir import check_out_dir

    check_out_dir(out_dir, [])  # before building the demo models (minutes); run_check checks overlaps again
    out.print(DEMO_EXPLANATION)
    models = build_demo(force=rebuild, log=(lambda m: None) if quiet else (lambda m: err.print(f"[dim]{m}[/]")))
    target = getattr(models, unlearned)
    out.print(f"auditing [bold]{unlearned}[/] model {target} against base {models.base} (retrain {models.retrain})")
    options = demo_options(models, unlearned, formats=expand_presets(split_list(formats)), out_dir=out_dir, seed=seed,
                           protocol=protocol, compute=compute, quiet=quiet)
    raise typer.Exit(run_check(options))
