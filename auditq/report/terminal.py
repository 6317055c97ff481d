"""The rich terminal view: a format × check table coloured by verdict, and a metrics table.

Cells fold instead of ending in "…": at 80 columns (a CI log, a small terminal) a truncated interval would hide
the very number a reviewer needs."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from auditq.report.base import describe_check, fmt_number, provenance_label
from auditq.report.escape import term
from auditq.result.model import NOT_REQUESTED, AuditReport

STYLE = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow", "UNKNOWN": "bold magenta",
         "WAIVED": "bold blue", NOT_REQUESTED: "dim"}


def verdict_table(report: AuditReport) -> Table:
    checks = sorted({c.check for c in report.all_checks()}, key=[c.check for c in report.all_checks()].index)
    table = Table(title=f"auditq verdicts — overall {report.verdict}", show_lines=False)
    table.add_column("check", no_wrap=True, min_width=24)
    for fmt in report.formats:
        table.add_column(term(fmt.format), justify="center", overflow="fold")
    for check in checks:
        row = [check]
        for fmt in report.formats:
            found = next((c for c in fmt.checks if c.check == check), None)
            if found is None:
                row.append("—")
                continue
            if found.verdict == NOT_REQUESTED:  # no number: nothing was measured, nothing failed to measure
                row.append("[dim]not requested[/]")
                continue
            label = found.verdict if found.gating else f"{found.verdict} (warn)"
            row.append(f"[{STYLE[found.verdict]}]{label}[/]\n{fmt_number(found.value)}"
                       + ("" if found.ci_low is None else f"\n[{fmt_number(found.ci_low)}, {fmt_number(found.ci_high)}]"))
        table.add_row(*row)
    return table


def metrics_table(report: AuditReport) -> Table:
    """One row per format and role. The source column appears only when some row was not measured here (the
    lines under the table name those rows' cache entries); without it the table fits 80 columns."""
    sources = {(fmt.format, role): provenance_label(m).split(" ")[0].rstrip(":")  # measured | cached | mixed
               for fmt in report.formats for role, m in fmt.roles.items()}
    show_source = any(source != "measured" for source in sources.values())
    table = Table(title="metrics (ROUGE-L F1; Min-K% AUC with forget = members)")
    names = ("format", "model", "VerbMem forget", "KnowMem forget", "KnowMem retain", "retain PPL", "Min-K% AUC")
    for name in (*names, "source") if show_source else names:
        table.add_column(name, justify="right" if name not in ("format", "model", "source") else "left",
                         overflow="fold")
    for fmt in report.formats:
        for role, m in fmt.roles.items():
            source = (sources[fmt.format, role],) if show_source else ()
            if m.error:  # the message itself goes on one line under the table (row_errors)
                table.add_row(term(fmt.format), role, "[magenta]error ↓[/]", "", "", "", "", *source)
                continue
            auc = m.mia.get("mink")
            table.add_row(term(fmt.format), role, fmt_number(m.verbmem_forget), fmt_number(m.knowmem_forget),
                          fmt_number(m.knowmem_retain), fmt_number(m.retain_ppl, 2),
                          fmt_number(auc.auc if auc else None), *source)
    return table


def row_errors(report: AuditReport) -> list[str]:
    """'fmt role: message' for every model that could not be measured, one line each."""
    return [f"{fmt.format} {role}: {m.error}" for fmt in report.formats for role, m in fmt.roles.items() if m.error]


def print_report(report: AuditReport, console: Console | None = None) -> None:
    console = console or Console()
    console.print(metrics_table(report))
    for line in row_errors(report):  # whole, not folded into a narrow table cell
        console.print(f"[magenta]error[/] {term(line)}", highlight=False, soft_wrap=True)
    for fmt in report.formats:
        for role, m in fmt.roles.items():
            label = provenance_label(m)
            if label != "measured":
                console.print(f"[dim]source {term(fmt.format)} {role}: {term(label)}[/]", highlight=False, soft_wrap=True)
    console.print(verdict_table(report))
    floor = report.config.get("retention", "floor") == "floor"
    console.print("[dim]PrivLeak is MUSE's: negative = under-unlearned (forget text still recognised), positive = "
                  "over-unlearned. " + ("Retention counts base's forget score as 1 and base's holdout score (the "
                                        "non-member floor) as 0." if floor else "Retention = unlearned / base.")
                  + "[/]", highlight=False, soft_wrap=True)
    from auditq.report.evidence_view import evidence_rows

    for row in evidence_rows(report):
        style = "bold red" if row.identical == "YES" else "dim"
        console.print(f"[{style}]weight space {term(row.format)}[/]: {term(row.detail)}", highlight=False)
    for fmt in report.formats:
        if fmt.details.get("note"):
            console.print(f"[dim]{term(fmt.format)}: {term(fmt.details['note'])}[/]")
    failing = [c for c in report.all_checks() if c.verdict not in ("PASS", "WAIVED", NOT_REQUESTED) and c.gating]
    for check in failing:
        console.print(f"[{STYLE[check.verdict]}]{check.verdict}[/] {term(check.format)} {check.check}: "
                      f"{term(describe_check(check))} — {term(check.message)}", highlight=False)
    for w in report.waivers:
        style = {"applied": "blue", "expired": "bold yellow", "unmatched": "yellow"}.get(w["status"], "dim")
        console.print(f"[{style}]waiver {term(w['status'])}[/] {term(w['format'])} {term(w['check'])} "
                      f"(expires {term(w['expires'])}): {term(w.get('detail', ''))}", highlight=False)
    if (report.arguments.get("protocol") or "auditq") != "auditq":
        from auditq.probes.muse import PROTOCOL_NOTES

        console.print(f"[dim]probe protocol: {term(PROTOCOL_NOTES.get(report.arguments['protocol']))}[/]", highlight=False)
    _print_not_requested(report, console)
    console.print(f"overall: [{STYLE[report.verdict]}]{report.verdict}[/] (exit {report.exit_code})")


def _print_not_requested(report: AuditReport, console: Console) -> None:
    """Which checks --probes left out (once, not per format), and why an audit that ran none is UNKNOWN."""
    from auditq.verdict.policy import nothing_gated

    left_out = list(dict.fromkeys(c.check for c in report.all_checks() if c.verdict == NOT_REQUESTED))
    if left_out:
        console.print(f"[dim]not requested (their probes are not in --probes; left out of the verdict): "
                      f"{', '.join(left_out)}[/]", highlight=False, soft_wrap=True)
    if report.verdict == "UNKNOWN" and nothing_gated(list(report.all_checks())):
        console.print("[bold magenta]UNKNOWN[/]: no gating check ran — the probes asked for measure none; "
                      "add probes to --probes (verbmem, knowmem, mia)", highlight=False, soft_wrap=True)
