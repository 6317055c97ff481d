"""The rich terminal view: a format × check table coloured by verdict, and a metrics table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from auditq.report.base import describe_check, fmt_number
from auditq.report.model import AuditReport

STYLE = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow", "UNKNOWN": "bold magenta",
         "WAIVED": "bold blue"}


def verdict_table(report: AuditReport) -> Table:
    checks = sorted({c.check for c in report.all_checks()}, key=[c.check for c in report.all_checks()].index)
    table = Table(title=f"auditq verdicts — overall {report.verdict}", show_lines=False)
    table.add_column("check", no_wrap=True, min_width=24)
    for fmt in report.formats:
        table.add_column(fmt.format, justify="center")
    for check in checks:
        row = [check]
        for fmt in report.formats:
            found = next((c for c in fmt.checks if c.check == check), None)
            if found is None:
                row.append("—")
                continue
            label = found.verdict if found.gating else f"{found.verdict} (warn)"
            row.append(f"[{STYLE[found.verdict]}]{label}[/]\n{fmt_number(found.value)}"
                       + ("" if found.ci_low is None else f" [{fmt_number(found.ci_low)},{fmt_number(found.ci_high)}]"))
        table.add_row(*row)
    return table


def metrics_table(report: AuditReport) -> Table:
    table = Table(title="metrics (ROUGE-L F1; Min-K% AUC with forget = members)")
    for name in ("format", "model", "VerbMem forget", "KnowMem forget", "KnowMem retain", "retain PPL", "Min-K% AUC"):
        table.add_column(name, justify="right" if name not in ("format", "model") else "left")
    for fmt in report.formats:
        for role, m in fmt.roles.items():
            if m.error:
                table.add_row(fmt.format, role, f"[magenta]{m.error}[/]", "", "", "", "")
                continue
            auc = m.mia.get("mink")
            table.add_row(fmt.format, role, fmt_number(m.verbmem_forget), fmt_number(m.knowmem_forget),
                          fmt_number(m.knowmem_retain), fmt_number(m.retain_ppl, 2),
                          fmt_number(auc.auc if auc else None))
    return table


def print_report(report: AuditReport, console: Console | None = None) -> None:
    console = console or Console()
    console.print(metrics_table(report))
    console.print(verdict_table(report))
    from auditq.report.evidence_view import evidence_rows

    for row in evidence_rows(report):
        style = "bold red" if row.identical == "YES" else "dim"
        console.print(f"[{style}]weight space {row.format}[/]: {row.detail}", highlight=False)
    for fmt in report.formats:
        if fmt.details.get("note"):
            console.print(f"[dim]{fmt.format}: {fmt.details['note']}[/]")
    failing = [c for c in report.all_checks() if c.verdict not in ("PASS", "WAIVED") and c.gating]
    for check in failing:
        console.print(f"[{STYLE[check.verdict]}]{check.verdict}[/] {check.format} {check.check}: "
                      f"{describe_check(check)} — {check.message}")
    for w in report.waivers:
        style = {"applied": "blue", "expired": "bold yellow", "unmatched": "yellow"}.get(w["status"], "dim")
        console.print(f"[{style}]waiver {w['status']}[/] {w['format']} {w['check']} (expires {w['expires']}): "
                      f"{w.get('detail', '')}", highlight=False)
    if (report.arguments.get("protocol") or "auditq") != "auditq":
        from auditq.probes.muse import PROTOCOL_NOTES

        console.print(f"[dim]probe protocol: {PROTOCOL_NOTES.get(report.arguments['protocol'])}[/]", highlight=False)
    console.print(f"overall: [{STYLE[report.verdict]}]{report.verdict}[/] (exit {report.exit_code})")
