"""`auditq demo`: build (once, cached) tiny demo models and audit the planted failure with `auditq check`'s flow."""

from __future__ import annotations

from typing import Optional

import typer

from auditq.audit.request import CheckOptions
from auditq.cli.check import run_check
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
from auditq.formats import expand_presets  # -f paper-code / paper-text (auditq.formats.PRESETS)
from auditq.limits import check_numbers

# one line per paragraph: the console wraps it to the terminal's width (hard breaks at 110 columns re-wrapped at 80
# left half-empty lines)
DEMO_EXPLANATION = (
    "[bold]auditq demo[/] — the failure of Zhang et al. (ICLR 2025) on a 1M-parameter model.\n"
    "In a 7B model, unlearning moves weights by ~1e-4 of an int4 step, so 4-bit rounding maps the original and the "
    "unlearned weights onto the same codes and the forgotten data comes back. A model this small must move ~0.3 of a "
    "step to forget, so that would not happen by itself. The 'fragile' model simulates the large-model regime honestly: "
    "ordinary gradient-ascent + retain-loss unlearning, but after every step each Linear weight is projected back into "
    "the int4 round-to-nearest cell of the original weight. Expect forgetting at fp and rtn8, FAIL (recovery) at rtn4.\n"
    "Retention counts base's forget score as 1 and base's score on never-trained holdout records as 0; PrivLeak is "
    "MUSE's (negative = under-unlearned), on 133 forget vs 133 holdout texts (QA pairs scored as texts too)."
)


def demo_options(models, which: str, *, formats: tuple[str, ...], out_dir: Optional[str], seed: int,
                 protocol: str, compute, quiet: bool, report_formats: tuple[str, ...] = ()) -> CheckOptions:
    """The audit `demo` runs: the chosen demo model against base (and retrain), every probe, 16 rows a batch."""
    return CheckOptions(base=models.base, unlearned=getattr(models, which), retrain=models.retrain,
                        suite=models.suite, formats=formats, out=out_dir, seed=seed, batch_size=16,
                        max_batch_tokens=4096, compute=compute, protocol=protocol, quiet=quiet,
                        report_formats=report_formats)


def _check_light(unlearned: str, formats: tuple[str, ...], report_formats: tuple[str, ...],
                 out_dir: Optional[str]) -> None:
    """What can be refused before the demo models are built (minutes): the model choice, formats, --format, --out."""
    if unlearned not in DEMO_MODELS:
        raise InputError(f"--unlearned {unlearned!r}: expected one of {', '.join(DEMO_MODELS)}")
    from auditq.formats import parse_format
    from auditq.report.compliance import check_writers
    from auditq.report.outdir import check_out_dir

    for raw in formats:
        parse_format(raw, f"--formats {raw}")
    check_writers(report_formats, None if out_dir is None else out_dir)
    check_out_dir(out_dir, [])  # run_check checks overlaps with the inputs again once they exist


def next_steps(models, unlearned: str, out_dir: Optional[str], report_formats: tuple[str, ...], code: int) -> str:
    """What to look at and run after the verdict: the report, the HTML, and the fix for the planted failure."""
    lines = ["", "[bold]Next steps[/]"]
    if out_dir is None:
        lines.append("  keep the reports: auditq demo --out demo-report --format html")
    else:
        html = "html" in report_formats
        lines.append(f"  the report: {out_dir}/report.md (machine-readable: {out_dir}/report.json)")
        lines.append(f"  open {out_dir}/report.html in a browser" if html else
                     f"  the HTML page: auditq report {out_dir}/report.json --format html --out {out_dir}-html")
    if unlearned == "fragile" and code != 0:
        lines.append("  fix the planted failure with SURE and re-check it (about 5 minutes on 2 cores):")
        lines.append(f"    auditq remediate {models.base} --suite {models.suite} --method sure "
                     f"--retrain {models.retrain} --out remediated --threads 1")
    elif unlearned == "fragile":
        lines.append("  the fragile model passed: that is not what the demo expects (see docs/demo.md)")
    lines.append("  audit your own checkpoints: auditq check BASE UNLEARNED --retrain RETRAIN --out audit/")
    lines.append("  exit codes: 0 pass, 1 fail or inconclusive, 2 bad input, 3 could not measure")
    return "\n".join(lines)


DEMO_MODELS = ("fragile", "honest", "retrain")


def demo(
    unlearned: str = typer.Option("fragile", help="Which demo model to audit: fragile (the planted failure: FAIL at "
                                  "rtn4), honest (no FAIL; PrivLeak INCONCLUSIVE), or retrain (PASS)."),
    formats: list[str] = typer.Option([DEFAULT_FORMATS], "--formats", "-f", metavar="FORMATS",
                                      help="Comma-separated formats, as in `auditq check`."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Write report.json, samples.jsonl, report.md and "
                                          "junit.xml here (replaced as a whole)."),
    report_format: list[str] = typer.Option([], "--format", metavar="FORMATS",
                                            help="Extra report files in --out: sarif, html."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild the cached demo models."),
    seed: int = typer.Option(0, help="Seed for the bootstrap intervals."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch CPU threads (default: min(4, cores))."),
    protocol: str = typer.Option("auditq", help="Probe protocol: auditq (default) or muse."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or build log."),
) -> None:
    """Build (once, cached) tiny demo models and audit the planted failure: forgotten at fp/rtn8, back at rtn4."""
    compute = compute_request(device, dtype, device_map)
    format_list = expand_presets(split_list(formats))
    extra_reports = tuple(dict.fromkeys(f.strip().lower() for v in report_format for f in v.split(",") if f.strip()))
    _check_light(unlearned, format_list, extra_reports, out_dir)
    check_numbers({"seed": seed, "threads": threads})  # before the build and the thread pool (auditq.limits)
    set_threads(threads)
    from auditq.demo.build import build_demo

    out.print(DEMO_EXPLANATION)
    models = build_demo(force=rebuild, log=(lambda m: None) if quiet else (lambda m: err.print(f"[dim]{m}[/]")))
    target = getattr(models, unlearned)
    out.print(f"auditing [bold]{unlearned}[/] model {target} against base {models.base} (retrain {models.retrain})")
    options = demo_options(models, unlearned, formats=format_list, out_dir=out_dir, seed=seed, protocol=protocol,
                           compute=compute, quiet=quiet, report_formats=extra_reports)
    code = run_check(options)
    # soft_wrap: the commands stay one line each, so a copy from a narrow terminal pastes and runs
    out.print(next_steps(models, unlearned, out_dir, extra_reports, code), highlight=False, soft_wrap=True)
    raise typer.Exit(code)
