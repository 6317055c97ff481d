"""After an audit: the report on the terminal, cache notes on stderr, and the report files in --out.

Shared by `auditq check`, `demo` and `remediate`'s re-check (auditq.cli.check, auditq.remediate.command).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from rich.console import Console


def publish(outcome: Any, cache: Any, out_dir: Optional[Path], writers: tuple[str, ...], out: Console,
            err: Console, quiet: bool) -> int:
    """Print the report (stdout), warn about tampered cache entries, write the report files; the exit code."""
    from auditq.report import write_reports
    from auditq.report.samples import render_samples
    from auditq.report.terminal import print_report

    report = outcome.report
    print_report(report, out)
    if cache is not None and cache.tampered:
        err.print(f"auditq: warning: {len(cache.tampered)} cache entr(y/ies) failed their sha256/HMAC check "
                  "(edited or forged); they were dropped and measured again", highlight=False, markup=False)
    if cache is not None and not quiet:
        from auditq.report.escape import term

        err.print(f"[dim]result cache: {cache.hits} probe result(s) re-used, {cache.misses} measured "
                  f"({term(cache.directory)})[/]", highlight=False)
    if out_dir is not None:
        paths = write_reports(out_dir, report, writers=writers, replace=True,
                              extra_files={"samples.jsonl": render_samples(outcome.runs)})
        out.print(f"reports written: {', '.join(str(p) for p in paths)}", soft_wrap=True)  # paths stay whole
    return report.exit_code


def audit_and_publish(options: Any, validated: Any, out: Console, err: Console) -> int:
    """Run the audit core on what the light stage validated, with progress bars, then print and write it.

    One path for `auditq check`, `demo` and remediate's re-check: `validated` is
    auditq.validate.inputs.validate_check's result for `options`; the exit code is the report's.
    """
    outcome, request = audit_validated(options, validated, err)
    return publish(outcome, request.cache, validated.out, validated.writers, out, err, options.quiet)


def audit_validated(options: Any, validated: Any, err: Console, events: Any = None) -> tuple[Any, Any]:
    """(outcome, request): the audit core run on what the light stage validated for `options`, with progress
    bars on `err` (none with --quiet), or on `events` when given (a sweep's candidates audited at once print
    labelled lines instead: rich shows one live display at a time). Shared by `audit_and_publish` and
    `auditq sweep`'s candidates."""
    from auditq.audit.check import prepare_request, run_check_audit
    from auditq.report.progress import RichEvents

    request = prepare_request(options, suite=validated.suite, parsed_formats=validated.parsed_formats,
                              config=validated.config, waivers=validated.waivers, fail_on=validated.fail_on,
                              calibration_lines=validated.calibration_lines)
    events = events or RichEvents(options.quiet, err)
    try:
        outcome = run_check_audit(request, events, None if options.quiet else err)
    finally:
        events.close()
    return outcome, request
