"""Run a sweep: each candidate through the ordinary audit core, with one result cache (auditq.sweep.parallel:
one after the other locally, several at once on Ray once the first has measured BASE and RETRAIN).

BASE and RETRAIN are the same checkpoints in every candidate's audit, so the first candidate measures them and
every later one finds their rows in the cache (the plan has nothing left to measure for them; each candidate's
report says which rows came from the cache, and sweep.json lists the roles each candidate measured). With
--executor ray the cluster is connected once for the whole sweep; within a candidate its roles run as tasks.
Every file goes into a staging directory that replaces --out as a whole at the end.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from auditq.sweep.options import SweepOptions, ValidatedSweep


def run_sweep(options: SweepOptions, validated: ValidatedSweep, out: Any, err: Any) -> int:
    """Audit every candidate, write their reports and the sweep's, print the ranking; the sweep's exit code."""
    from auditq.audit.executors import EXECUTORS
    from auditq.sweep.parallel import audit_candidates
    from auditq.sweep.rank import candidate_row

    first_options = validated.checks[0][1]
    # one connection to the cluster for every candidate
    with EXECUTORS.load(options.executor)(first_options) as executor:
        results = audit_candidates(validated.checks, executor, err, options.quiet)
    rows = [candidate_row(label, str(check.unlearned), outcome.report) for label, check, _, outcome in results]
    code = _write(options, validated.out, results, rows)
    _print(rows, options, out, code, validated.out)
    return code


def _write(options: SweepOptions, target: Path, results: list, rows: list) -> int:
    """Every candidate's reports under <label>/, then sweep.json/.md/.html; swapped in as a whole."""
    from auditq.report import write_reports
    from auditq.report.dirswap import swap_in
    from auditq.report.outdir import fresh_staging
    from auditq.report.samples import render_samples
    from auditq.sweep.rank import summary
    from auditq.sweep.render import render_html, render_json, render_markdown

    staging = fresh_staging(target)
    try:
        for label, _, checked, outcome in results:
            writers = tuple(dict.fromkeys((*checked.writers, "html")))
            write_reports(staging / label, outcome.report, writers=writers, replace=True,
                          extra_files={"samples.jsonl": render_samples(outcome.runs)})
        data = summary(rows, options.require, {"base": str(options.base),
                                               "retrain": str(options.retrain) if options.retrain else None,
                                               "formats": list(rows[0].formats) if rows else []})
        (staging / "sweep.json").write_text(render_json(data), encoding="utf-8")
        (staging / "sweep.md").write_text(render_markdown(data), encoding="utf-8")
        (staging / "sweep.html").write_text(render_html(data, rows), encoding="utf-8")
        swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return int(data["exit_code"])


def _print(rows: list, options: SweepOptions, out: Any, code: int, target: Path) -> None:
    from rich.table import Table

    from auditq.sweep.rank import ranked

    table = Table(title=f"auditq sweep: {len(rows)} candidate(s), most robust first")
    for name in ("rank", "candidate", "verdict", "retention fp", "retention worst", "worst format", "utility"):
        table.add_column(name)
    show = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for rank, row in enumerate(ranked(rows), 1):
        table.add_row(str(rank), row.label, row.verdict, show(row.retention_fp), show(row.retention_worst),
                      row.worst_format or "n/a", show(row.utility))
    out.print(table)
    passing = sum(r.passes for r in rows)
    out.print(f"{passing} of {len(rows)} candidate(s) pass every check (--require {options.require}: exit {code}); "
              f"reports in {target}", highlight=False, markup=False)
