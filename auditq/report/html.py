"""report.html: one self-contained page (no network, no scripts) for people reviewing a release.

- the verdict matrix (check × format) and every check with value, interval, rule and message;
- the paper's picture per metric (auditq/report/charts.py): forget-set VerbMem and KnowMem, their
  retention as the checks judge it (floored by default, with the raw unlearned / base ratio beside it)
  against the threshold, and retain-set utility, by precision, for base vs unlearned (vs retrain),
  with bootstrap 95% intervals;
- membership-inference ROC curves (Min-K%) per format, from the ROC points stored in report.json;
- waivers, metrics, checkpoints with their file hashes, and the sign convention.

Figures are drawn with matplotlib (no pyplot, no global state) as SVG and embedded as data URIs,
text as paths (no font files needed); the same report gives the same bytes.
"""

from __future__ import annotations

import html
from typing import Any

from auditq.report.base import ReportWriter, describe_check, fmt_number, provenance_label
from auditq.report.charts import ROC_ATTACK, ROLE_COLORS
from auditq.report.charts import figures as _figures
from auditq.result.model import NOT_REQUESTED, AuditReport, verdict_label

__all__ = ["HtmlWriter", "ROLE_COLORS"]  # ROLE_COLORS: the charts' palette, for tests that look for a series

VERDICT_CSS = {"PASS": "pass", "FAIL": "fail", "INCONCLUSIVE": "inconclusive", "UNKNOWN": "unknown", "WAIVED": "waived",
               "NOT_REQUESTED": "notrequested"}

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#1b1b1b;
background:#fff;line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}th,td{border:1px solid #d0d0d0;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 10px;border-radius:4px;font-weight:700;color:#fff}
.pass{background:#1e8e3e;color:#fff}.fail{background:#c5221f;color:#fff}.inconclusive{background:#e37400;color:#fff}
.unknown{background:#8e24aa;color:#fff}.waived{background:#1a73e8;color:#fff}
.notrequested{background:#f3f3f3;color:#777;font-style:italic}
td.pass,td.fail,td.inconclusive,td.unknown,td.waived{font-weight:600}
td.warn{opacity:.75}.small{font-size:.85em;color:#555}figure{margin:16px 0}figcaption{font-size:.9em;color:#444}
figure img{max-width:100%;height:auto;border:1px solid #eee}code{font-size:.9em}
"""


def _e(value: Any) -> str:
    from auditq.report.escape import visible

    return html.escape(visible(value), quote=True)


def _verdict_cell(check) -> str:
    css = VERDICT_CSS.get(check.verdict, "")
    if check.verdict == NOT_REQUESTED:
        return f'<td class="{css}" title="{_e(check.message)}">not requested</td>'
    label = check.verdict + ("" if check.gating else " (warn)")
    interval = "" if check.ci_low is None else f" [{fmt_number(check.ci_low)}, {fmt_number(check.ci_high)}]"
    return (f'<td class="{css}{"" if check.gating else " warn"}" title="{_e(check.message)}">{_e(label)}<br>'
            f'<span class="small" style="color:inherit">{_e(fmt_number(check.value))}{_e(interval)}</span></td>')


def _matrix(report: AuditReport) -> str:
    names = list(dict.fromkeys(c.check for c in report.all_checks()))
    head = "".join(f"<th>{_e(f.format)}</th>" for f in report.formats)
    rows = []
    for name in names:
        cells = []
        for fmt in report.formats:
            check = next((c for c in fmt.checks if c.check == name), None)
            cells.append(_verdict_cell(check) if check else "<td>—</td>")
        rows.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    return f'<table id="verdict-matrix"><tr><th>check</th>{head}</tr>{"".join(rows)}</table>'


def _checks_table(report: AuditReport) -> str:
    rows = []
    for c in report.all_checks():
        waiver = ""
        if c.waiver:
            waiver = f"{_e(c.waiver.get('status'))} until {_e(c.waiver.get('expires'))}: {_e(c.waiver.get('reason'))}"
        rows.append(f'<tr><td>{_e(c.format)}</td><td>{_e(c.check)}</td>'
                    f'<td class="{VERDICT_CSS.get(c.verdict, "")}">{_e(verdict_label(c.verdict))}</td>'
                    f'<td>{_e(c.severity)}</td><td class="num">'
                    f'{_e("—" if c.verdict == NOT_REQUESTED else describe_check(c))}</td><td>{_e(c.message)}</td>'
                    f'<td>{waiver}</td></tr>')
    return ('<table id="checks"><tr><th>format</th><th>check</th><th>verdict</th><th>severity</th>'
            '<th>value [95% CI] (rule, n)</th><th>detail</th><th>waiver</th></tr>' + "".join(rows) + "</table>")


def _metrics_table(report: AuditReport) -> str:
    rows = []
    for fmt in report.formats:
        engine = fmt.details.get("engine", "")
        for role, m in fmt.roles.items():
            if m.error:
                rows.append(f"<tr><td>{_e(fmt.format)}</td><td>{_e(role)}</td><td colspan=6>{_e(m.error)}</td>"
                            f"<td>{_e(provenance_label(m))}</td></tr>")
                continue
            auc = m.mia.get(ROC_ATTACK)
            cells = [fmt_number(m.verbmem_forget), fmt_number(m.knowmem_forget), fmt_number(m.knowmem_retain),
                     fmt_number(m.retain_ppl, 2), fmt_number(auc.auc if auc else None)]
            rows.append(f"<tr><td>{_e(fmt.format)}</td><td>{_e(role)}</td>"
                        + "".join(f'<td class="num">{_e(v)}</td>' for v in cells) + f"<td>{_e(engine)}</td>"
                        f"<td>{_e(provenance_label(m))}</td></tr>")
    return ("<table id=\"metrics\"><tr><th>format</th><th>model</th><th>VerbMem forget</th><th>KnowMem forget</th>"
            "<th>KnowMem retain</th><th>retain PPL</th><th>Min-K% AUC</th><th>engine</th><th>source</th></tr>" + "".join(rows) + "</table>")


def _evidence_table(report: AuditReport) -> str:
    from auditq.report.evidence_view import EXPLANATION, HEADER, evidence_rows

    rows = evidence_rows(report)
    if not rows:
        return ""
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row.cells()) + "</tr>" for row in rows)
    return (f"<h2>Weight-space evidence</h2><p class=small>{_e(EXPLANATION)}</p><table id=\"weight-evidence\"><tr>"
            + "".join(f"<th>{_e(h)}</th>" for h in HEADER) + "</tr>" + body + "</table>")


def _waivers_table(report: AuditReport) -> str:
    if not report.waivers:
        return "<p>No waivers configured.</p>"
    rows = "".join(
        f"<tr><td>{_e(w['check'])}</td><td>{_e(w['format'])}</td><td>{_e(w['status'])}</td><td>{_e(w['expires'])}</td>"
        f"<td>{_e(w['reason'])}</td><td>{_e(w.get('detail', ''))}</td><td>{_e(w.get('source', ''))}</td></tr>"
        for w in report.waivers)
    return ("<table id=\"waivers\"><tr><th>check</th><th>format</th><th>status</th><th>expires</th><th>reason</th>"
            "<th>detail</th><th>source</th></tr>" + rows + "</table>")


def _checkpoints(report: AuditReport) -> str:
    items = []
    for role, info in report.checkpoints.items():
        files = "".join(f"<li><code>{_e(name)}</code> sha256 <code>{_e(digest)}</code></li>"
                        for name, digest in sorted((info.get("files") or {}).items()))
        items.append(f"<li><b>{_e(role)}</b>: <code>{_e(info.get('path'))}</code><ul class=small>{files}</ul></li>")
    return "<ul>" + "".join(items) + "</ul>"


class HtmlWriter(ReportWriter):
    filename = "report.html"

    def render(self, report: AuditReport) -> str:
        css = VERDICT_CSS.get(report.verdict, "")
        sizes = report.suite.get("sizes", {})
        suite_text = ", ".join(f"{split} {v.get('texts', 0)} texts / {v.get('qa', 0)} QA" for split, v in sizes.items())
        figures = "\n".join(_figures(report)) or "<p>Nothing was measured that can be plotted.</p>"
        notes = "".join(f"<li><b>{_e(f.format)}</b>: {_e(f.details.get('note'))}</li>"
                        for f in report.formats if f.details.get("note"))
        return "\n".join([
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>auditq report — {_e(report.verdict)}</title>",
            f"<style>{CSS}</style></head><body>",
            f'<h1>auditq report <span class="badge {css}" id="overall">{_e(report.verdict)}</span></h1>',
            f'<p class="small">exit code {report.exit_code} · gate: fail on '
            f'{_e(report.arguments.get("fail_on", "inconclusive"))} · auditq {_e(report.tool_version)} · report schema '
            f'{_e(report.schema_version)} · seed {report.seed} · {_e(report.created)}</p>',
            f"<p>base <code>{_e(report.checkpoints.get('base', {}).get('path'))}</code> · unlearned "
            f"<code>{_e(report.checkpoints.get('unlearned', {}).get('path'))}</code>"
            + (f" · retrain <code>{_e(report.checkpoints['retrain'].get('path'))}</code>" if "retrain" in report.checkpoints else "")
            + f" · suite <code>{_e(report.suite.get('name'))}</code> ({_e(suite_text)})"
            + f" · probe protocol <code>{_e(report.arguments.get('protocol') or 'auditq')}</code></p>",
            "<h2>Verdicts</h2>",
            "<p class=small>PASS: the whole 95% interval is on the passing side; FAIL: the whole interval fails; "
            "INCONCLUSIVE: it straddles the threshold or n is too small; UNKNOWN: could not be measured; "
            "WAIVED: a FAIL accepted by an unexpired waiver; not requested: its probe was not in --probes (left "
            "out of the overall verdict). (warn) checks do not gate.</p>",
            _matrix(report),
            "<h2>Plots</h2>",
            figures,
            "<h2>Checks</h2>",
            _checks_table(report),
            "<h2>Waivers</h2>",
            _waivers_table(report),
            "<h2>Metrics by format</h2>",
            _metrics_table(report),
            _evidence_table(report),
            f"<h2>Format notes</h2><ul>{notes}</ul>" if notes else "",
            "<h2>Checkpoints</h2>",
            _checkpoints(report),
            "<h2>Conventions</h2>",
            f"<p>{_e(report.sign_convention)}</p>",
            "</body></html>",
            "",
        ])
