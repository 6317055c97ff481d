"""Report writers behind one interface, in a lazy registry (one writer per module).

`write_reports` writes every file into a temporary directory beside the target and
moves them in only when all are complete, so a failed run leaves no half-written report.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from auditq.registry import Registry
from auditq.report.base import ReportWriter
from auditq.result.model import AuditReport

WRITERS: Registry[type[ReportWriter]] = Registry("report writer")
WRITERS.register("json", "auditq.report.json_writer:JsonWriter")
WRITERS.register("md", "auditq.report.markdown:MarkdownWriter")
WRITERS.register("junit", "auditq.report.junit:JUnitWriter")
WRITERS.register("sarif", "auditq.report.sarif:SarifWriter")
WRITERS.register("html", "auditq.report.html:HtmlWriter")

DEFAULT_WRITERS = ("json", "md", "junit")


def write_reports(out_dir: Path, report: AuditReport, writers: Iterable[str] = DEFAULT_WRITERS,
                  extra_files: dict[str, str] | None = None, replace: bool = False) -> list[Path]:
    """Render every writer (plus `extra_files` name -> text) and move them into `out_dir` together.

    `replace` (check, demo): `out_dir` is replaced as a whole (auditq.report.outdir), so no stale file of an
    earlier run survives; otherwise (`auditq report` re-rendering beside report.json) the rendered
    files are moved into the existing directory, every other file there is kept.
    """
    from auditq.report.dirswap import swap_in
    from auditq.report.outdir import fresh_staging

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        from auditq.errors import InputError

        raise InputError(f"--out {out_dir} exists and is not a directory")
    rendered: dict[str, str] = {}
    for name in writers:
        writer = WRITERS.load(name)()
        rendered[writer.filename] = writer.render(report)
    rendered.update(extra_files or {})
    staging = fresh_staging(out_dir)
    try:
        for filename, text in rendered.items():
            (staging / filename).write_text(text, encoding="utf-8")
        if replace or not out_dir.exists():
            swap_in(staging, out_dir)
        else:
            for filename in rendered:
                os.replace(staging / filename, out_dir / filename)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out_dir / name for name in rendered]


__all__ = ["DEFAULT_WRITERS", "WRITERS", "ReportWriter", "write_reports"]
