"""`auditq remediate`'s re-check: `auditq check BASE STAGED` through the audit core (auditq.audit.check) with the
same suite, formats, config and device, its reports written inside the staged checkpoint."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

RECHECK_DIR = "auditq-recheck"


def recheck_options(opts, checked: Path, suite_dir: Path):
    """The re-check `auditq check BASE STAGED` as one CheckOptions: the same suite, formats, config and device,
    every probe, 16 rows a batch, reports into STAGED/auditq-recheck/ (inside the checked dir, allowed)."""
    from auditq.audit.request import CheckOptions
    from auditq.checkpoint.placement_flags import ComputeRequest

    return CheckOptions(
        base=opts.base, unlearned=checked, retrain=opts.retrain, suite=suite_dir, formats=tuple(opts.formats),
        out=str(checked / RECHECK_DIR), out_inside=checked, config_file=opts.config_file,
        thresholds=tuple(opts.thresholds), severities=tuple(opts.severities),
        allow_inconclusive=opts.allow_inconclusive, seed=opts.seed, batch_size=16, max_batch_tokens=4096,
        compute=opts.compute or ComputeRequest(), trust_remote_code=opts.trust_remote_code, quiet=opts.quiet,
        executor=getattr(opts, "executor", "local"), ray_address=getattr(opts, "ray_address", None),
        ray_timeout=getattr(opts, "ray_timeout", 6 * 3600.0))


def recheck(options, console: Console, err: Console) -> int:
    """Validate the re-check's inputs (the staged checkpoint against BASE), run the audit core, print and write
    its reports; the exit code."""
    from auditq.report.publish import audit_and_publish
    from auditq.validate.inputs import validate_check

    return audit_and_publish(options, validate_check(options), console, err)


def read_recheck(path: Path) -> dict:
    """Verdict and per-format check verdicts from the re-check's report.json."""
    import json

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"verdict": None, "checks": None, "created": None}
    checks = {}
    for fmt in report.get("formats", []):
        checks[fmt.get("format")] = {c.get("check"): {"verdict": c.get("verdict"), "value": c.get("value"),
                                                       "ci": [c.get("ci_low"), c.get("ci_high")],
                                                       "threshold": c.get("threshold")}
                                     for c in fmt.get("checks", [])}
    return {"verdict": report.get("verdict"), "checks": checks, "created": report.get("created")}
