"""Weight-space evidence (auditq.audit.evidence) as rows for the terminal, Markdown and HTML reports."""

from __future__ import annotations

from dataclasses import dataclass

from auditq.result.model import AuditReport

HEADER = ("format", "codes equal to BASE", "mean |Δw| (steps)", "bit-identical", "detail")
EXPLANATION = ("Weight-space evidence: the share of UNLEARNED's quantized codes equal to BASE's in each format, "
               "and the mean |w_unlearned − w_base| in units of BASE's quantization step. Bit-identical means every "
               "code, scale and unquantized tensor is the same: the unlearning does not exist in that format, "
               "whatever the probes say.")


@dataclass(frozen=True)
class EvidenceRow:
    format: str
    share: str
    delta: str
    identical: str
    detail: str

    def cells(self) -> tuple[str, str, str, str, str]:
        return (self.format, self.share, self.delta, self.identical, self.detail)


def evidence_rows(report: AuditReport) -> list[EvidenceRow]:
    rows = []
    for fmt in report.formats:
        ev = getattr(fmt, "weight_evidence", None)
        if not ev:
            continue
        if "codes_equal_share" not in ev:
            rows.append(EvidenceRow(fmt.format, "n/a", "n/a", "n/a", str(ev.get("error") or ev.get("note") or "")))
            continue
        delta = ev.get("mean_abs_delta_steps")
        rows.append(EvidenceRow(
            fmt.format, f"{ev['codes_equal_share']:.1%}", "n/a" if delta is None else f"{delta:.3g}",
            "YES" if ev.get("bit_identical") else "no", str(ev.get("summary", ""))))
    return rows
