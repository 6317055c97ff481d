"""`auditq report`: re-render report files from report.json without re-measuring anything."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from auditq.cli.common import out


def report_cmd(
    report_json: Path = typer.Argument(..., metavar="REPORT_JSON", help="A report.json written by `auditq check --out`."),
    report_format: list[str] = typer.Option([], "--format", metavar="FORMATS", help="md, html, sarif, junit, json (comma-separated; default: md,html,sarif,junit)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory to write to (default: beside report.json)."),
) -> None:
    """Re-render report files from report.json without re-measuring anything."""
    from auditq.report.compliance import rerender

    paths = rerender(report_json, report_format, out_dir)
    out.print(f"reports written: {', '.join(str(p) for p in paths)}", soft_wrap=True)  # paths stay whole

