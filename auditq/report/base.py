"""The report-writer interface: render a finished AuditReport to one file's text."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

from auditq.result.model import AuditReport


class ReportWriter(ABC):
    #: the file name this writer produces inside --out
    filename: str = ""

    @abstractmethod
    def render(self, report: AuditReport) -> str:
        """Return the whole file as text (deterministic for a given report)."""


def fmt_number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def describe_check(check) -> str:
    """'0.912 [0.850, 0.970] (<= 0.25, n=60)' for tables and messages."""
    interval = "" if check.ci_low is None else f" [{fmt_number(check.ci_low)}, {fmt_number(check.ci_high)}]"
    comparator = {"<=": "≤", ">=": "≥", "abs<=": "|x| ≤"}[check.comparator]
    return f"{fmt_number(check.value)}{interval} ({comparator} {fmt_number(check.threshold)}, n={check.n})"


def provenance_label(metrics) -> str:
    """'measured', 'cached (verbmem 1a2b3c4d, ...)' or 'mixed: ...' for one row (RoleMetrics.provenance):
    every cached probe output is named with the first 8 hex digits of its cache entry's sha256."""
    sources = dict(getattr(metrics, "provenance", None) or {})
    cached = {probe: v.partition(":")[2][:8] for probe, v in sorted(sources.items()) if v != "measured"}
    if not cached:
        return "measured"
    listed = ", ".join(f"{probe} {digest}" for probe, digest in cached.items())
    if len(cached) == len(sources):
        return f"cached ({listed})"
    measured = ", ".join(p for p, v in sorted(sources.items()) if v == "measured")
    return f"mixed: cached ({listed}); measured ({measured})"
