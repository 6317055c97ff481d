"""Each candidate's AuditReport read into one row of the sweep, and the rows ranked by robustness.

Robustness order: the worst gating verdict across every format first (PASS, then INCONCLUSIVE, UNKNOWN, FAIL:
a candidate that could not be measured never ranks as a pass, nor below a measured failure), then the forget
retention at the worst quantized format (lower is better), then at fp, then utility (higher is better).
Per check family the same order is applied to that family's worst verdict and value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from auditq.result.model import FAIL, INCONCLUSIVE, NOT_REQUESTED, PASS, UNKNOWN, WAIVED, AuditReport

#: verdict -> badness (WAIVED counts as the pass it was accepted as)
BADNESS = {PASS: 0, WAIVED: 0, INCONCLUSIVE: 1, UNKNOWN: 2, FAIL: 3}
FAMILIES = ("forget_retention", "recovery", "privleak", "utility")


@dataclass(frozen=True)
class CandidateRow:
    """One candidate's figures, read from its own report (never re-measured)."""

    label: str
    path: str
    verdict: str
    exit_code: int
    #: family -> (worst verdict across formats, the value behind it; warn-level checks included)
    families: dict[str, tuple[str, Optional[float]]]
    retention_fp: Optional[float]
    retention_worst: Optional[float]
    worst_format: Optional[str]
    recovery: Optional[float]
    utility: Optional[float]
    #: roles measured in this candidate's audit (the rest came from the result cache)
    measured_roles: tuple[str, ...] = ()
    formats: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passes(self) -> bool:
        return self.exit_code == 0


def _worst(values: list[float]) -> Optional[float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return max(finite) if finite else None


def candidate_row(label: str, path: str, report: AuditReport) -> CandidateRow:
    """The row of one candidate: worst verdicts per family, retention at fp and at the worst quantized format."""
    families: dict[str, tuple[str, Optional[float]]] = {}
    retention: dict[str, Optional[float]] = {}
    recovery: list[float] = []
    utility = None
    for fmt in report.formats:
        values = [c.value for c in fmt.checks if c.family == "forget_retention" and c.verdict != NOT_REQUESTED]
        retention[fmt.format] = _worst(values)
        recovery += [c.value for c in fmt.checks if c.family == "recovery" and c.value is not None]
        for check in fmt.checks:  # every requested check, warn-level too (utility is warn by default)
            if check.verdict == NOT_REQUESTED:
                continue
            old = families.get(check.family)
            if old is None or BADNESS.get(check.verdict, 2) > BADNESS.get(old[0], 2):
                families[check.family] = (check.verdict, check.value)
            if check.family == "utility" and fmt.format == "fp":
                utility = check.value
    quantized = {name: v for name, v in retention.items() if name != "fp" and v is not None}
    worst_format = max(quantized, key=quantized.get) if quantized else None
    measured = sorted({role for fmt in report.formats for role, m in fmt.roles.items()
                       if any(v == "measured" for v in m.provenance.values())})
    return CandidateRow(label=label, path=path, verdict=report.verdict, exit_code=report.exit_code,
                        families=families, retention_fp=retention.get("fp"),
                        retention_worst=quantized.get(worst_format) if worst_format else None,
                        worst_format=worst_format, recovery=_worst(recovery), utility=utility,
                        measured_roles=tuple(measured), formats=tuple(f.format for f in report.formats))


def _low(value: Optional[float]) -> float:
    return value if value is not None and math.isfinite(value) else math.inf


def robustness_key(row: CandidateRow) -> tuple:
    """Sort key, most robust first (ties keep the order the candidates were given)."""
    utility = row.utility if row.utility is not None and math.isfinite(row.utility) else -math.inf
    return (BADNESS.get(row.verdict, 2), _low(row.retention_worst), _low(row.retention_fp), -utility)


def ranked(rows: list[CandidateRow]) -> list[CandidateRow]:
    return sorted(rows, key=robustness_key)


def family_ranking(rows: list[CandidateRow], family: str) -> list[str]:
    """Labels ordered by one family's worst verdict, then its value (utility: higher is better; privleak: nearer
    0 is better; retention and recovery: lower is better)."""
    def key(row: CandidateRow) -> tuple:
        verdict, value = row.families.get(family, (UNKNOWN, None))
        if value is None or not math.isfinite(value):
            number = math.inf
        elif family == "utility":
            number = -value
        elif family == "privleak":
            number = abs(value)
        else:
            number = value
        return (BADNESS.get(verdict, 2), number)
    return [r.label for r in sorted(rows, key=key)]


def sweep_exit_code(rows: list[CandidateRow], require: str) -> int:
    """any: 0 when a candidate passes every check; all: 0 when every one does. Otherwise 1 when a candidate
    failed (or was inconclusive), 3 when the only reason is that something could not be measured."""
    passing = [r for r in rows if r.passes]
    if (require == "any" and passing) or (require == "all" and len(passing) == len(rows)):
        return 0
    return 1 if any(r.exit_code == 1 for r in rows) else 3


def summary(rows: list[CandidateRow], require: str, extra: dict[str, Any]) -> dict[str, Any]:
    """sweep.json: the ranking overall and per family, every row, the gate."""
    order = ranked(rows)
    return {"sweep_schema": "1", **extra, "require": require, "exit_code": sweep_exit_code(rows, require),
            "ranking": [r.label for r in order],
            "ranking_per_check": {f: family_ranking(rows, f) for f in FAMILIES},
            "candidates": [_row_json(r, rank) for rank, r in enumerate(order, 1)]}


def _row_json(row: CandidateRow, rank: int) -> dict[str, Any]:
    return {"rank": rank, "label": row.label, "path": row.path, "verdict": row.verdict, "exit_code": row.exit_code,
            "passes": row.passes, "checks": {f: {"verdict": v, "value": x} for f, (v, x) in row.families.items()},
            "forget_retention_fp": row.retention_fp, "forget_retention_worst": row.retention_worst,
            "worst_format": row.worst_format, "recovery": row.recovery, "utility": row.utility,
            "measured_roles": list(row.measured_roles), "report": f"{row.label}/report.json"}
