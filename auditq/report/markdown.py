"""report.md: the verdict table and per-format metrics for people reading a pull request."""

from __future__ import annotations

from auditq.report.base import ReportWriter, describe_check, fmt_number, provenance_label
from auditq.report.escape import md, md_code
from auditq.result.model import AuditReport

ICON = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "INCONCLUSIVE": "⚠️ INCONCLUSIVE", "UNKNOWN": "❓ UNKNOWN",
        "WAIVED": "🟦 WAIVED", "NOT_REQUESTED": "➖ not requested"}


class MarkdownWriter(ReportWriter):
    filename = "report.md"

    def render(self, report: AuditReport) -> str:
        lines = _header(report)
        lines += [
            "## Verdicts",
            "",
            "| format | check | verdict | severity | value [95% CI] (rule, n) | detail |",
            "|---|---|---|---|---|---|",
        ]
        for check in report.all_checks():
            lines.append(f"| {md(check.format)} | {md(check.check)} | {ICON.get(check.verdict, md(check.verdict))} | "
                         f"{md(check.severity)} | {md(_value(check))} | {md(check.message)} |")
        lines += _metrics(report)
        lines += _cache_line(report)
        lines += _evidence(report)
        if report.waivers:
            lines += ["", "## Waivers", "", "| check | format | status | expires | reason | detail |", "|---|---|---|---|---|---|"]
            lines += [f"| {md(w['check'])} | {md(w['format'])} | {md(w['status'])} | {md(w['expires'])} | {md(w['reason'])} | "
                      f"{md(w.get('detail', ''))} |" for w in report.waivers]
        notes = [(f.format, f.details.get("note")) for f in report.formats if f.details.get("note")]
        if notes:
            lines += ["", "## Format notes", ""] + [f"- **{md(name)}**: {md(note)}" for name, note in notes]
        lines += ["", "## Conventions", "", report.sign_convention, ""]
        return "\n".join(lines)


def _value(check) -> str:
    """The value cell: '—' for a check that was not requested (no number, no rule applied)."""
    return "—" if check.verdict == "NOT_REQUESTED" else describe_check(check)


def _header(report: AuditReport) -> list[str]:
    """Title, overall verdict, the checkpoints, the suite and the probe protocol."""
    lines = [
        "# auditq report",
        "",
        f"**Overall: {report.verdict}** (exit code {report.exit_code}) · auditq {report.tool_version} · "
        f"seed {report.seed} · {report.created}",
        "",
        f"- base: {md_code(report.checkpoints['base']['path'])}",
        f"- unlearned: {md_code(report.checkpoints['unlearned']['path'])}",
    ]
    if "retrain" in report.checkpoints:
        lines.append(f"- retrain: {md_code(report.checkpoints['retrain']['path'])}")
    sizes = report.suite["sizes"]
    lines += [
        f"- suite: {md_code(report.suite['name'])} (forget {sizes['forget']['texts']} texts / {sizes['forget']['qa']} QA, "
        f"retain {sizes['retain']['texts']} / {sizes['retain']['qa']}, holdout {sizes['holdout']['texts']} texts)",
        f"- probe protocol: {_protocol(report)}",
        "",
    ]
    return lines


def _metrics(report: AuditReport) -> list[str]:
    """The per-format, per-model metrics table (a model that could not be measured shows its error)."""
    lines = ["", "## Metrics by format", "",
             "| format | model | VerbMem forget | KnowMem forget | KnowMem retain | retain PPL | Min-K% AUC | engine | source |",
             "|---|---|---|---|---|---|---|---|---|"]
    for fmt in report.formats:
        engine = md(fmt.details.get("engine", ""))
        for role, m in fmt.roles.items():
            source = md(provenance_label(m))
            if m.error:
                lines.append(f"| {md(fmt.format)} | {md(role)} | {md(m.error)} | | | | | {engine} | {source} |")
                continue
            auc = m.mia.get("mink")
            lines.append(f"| {md(fmt.format)} | {md(role)} | {fmt_number(m.verbmem_forget)} | {fmt_number(m.knowmem_forget)} | "
                         f"{fmt_number(m.knowmem_retain)} | {fmt_number(m.retain_ppl, 2)} | "
                         f"{fmt_number(auc.auc if auc else None)} | {engine} | {source} |")
    return lines


def _cache_line(report: AuditReport) -> list[str]:
    cache = report.cache or {}
    if not cache.get("enabled"):
        return []
    return ["", f"Result cache: {cache.get('hits', 0)} probe output(s) re-used, {cache.get('misses', 0)} measured; "
            f"{len(cache.get('tampered') or [])} entr(y/ies) failed the sha256/HMAC check and were re-measured; "
            f"{len(cache.get('verified') or [])} cached row(s) re-measured by --verify-cache."]


def _evidence(report: AuditReport) -> list[str]:
    from auditq.report.evidence_view import EXPLANATION, HEADER, evidence_rows

    evidence = evidence_rows(report)
    if not evidence:
        return []
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731 - |Δw| inside a table cell
    return (["", "## Weight-space evidence", "", EXPLANATION, "", "| " + " | ".join(map(cell, HEADER)) + " |",
             "|---|---|---|---|---|"]
            + ["| " + " | ".join(map(cell, row.cells())) + " |" for row in evidence])


def _protocol(report: AuditReport) -> str:
    from auditq.probes.muse import PROTOCOL_NOTES

    name = report.arguments.get("protocol") or "auditq"
    return PROTOCOL_NOTES.get(name, name)
