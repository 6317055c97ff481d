"""report.json: the versioned, machine-readable record of an audit.

Floats are rounded to 6 decimals and keys keep a fixed order, so the same inputs
and seed give byte-identical files apart from the `created` timestamp.
"""

from __future__ import annotations

import json
import math
from typing import Any

from auditq.report.base import ReportWriter
from auditq.result.model import AttackResult, AuditReport, CheckResult, FormatResult, RoleMetrics


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class JsonWriter(ReportWriter):
    filename = "report.json"

    def render(self, report: AuditReport) -> str:
        return json.dumps(_clean(report.to_dict()), indent=2, ensure_ascii=False) + "\n"


def report_from_dict(data: dict[str, Any]) -> AuditReport:
    """Rebuild an AuditReport from report.json (for re-rendering without re-measuring)."""
    formats = []
    for f in data["formats"]:
        roles = {}
        for name, r in f["roles"].items():
            mia = {k: AttackResult(**{**v, "roc_fpr": tuple(v.get("roc_fpr") or ()),
                                      "roc_tpr": tuple(v.get("roc_tpr") or ())})
                   for k, v in (r.get("mia") or {}).items()}
            intervals = {k: tuple(v) for k, v in (r.get("intervals") or {}).items()}
            roles[name] = RoleMetrics(**{**r, "mia": mia, "intervals": intervals})
        checks = tuple(CheckResult(**c) for c in f["checks"])
        formats.append(FormatResult(**{**f, "roles": roles, "checks": checks}))
    return AuditReport(**{**data, "formats": tuple(formats), "waivers": tuple(data.get("waivers") or ())})
