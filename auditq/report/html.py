"""report.html: one self-contained page (no network, no scripts) for people reviewing a release.

- the verdict matrix (check × format) and every check with value, interval, rule and message;
- the paper's picture per metric: forget-set VerbMem and KnowMem, their retention (unlearned / base)
  against the threshold, and retain-set utility, by precision, for base vs unlearned (vs retrain),
  with bootstrap 95% intervals;
- membership-inference ROC curves (Min-K%) per format, from the ROC points stored in report.json;
- waivers, metrics, checkpoints with their file hashes, and the sign convention.

Figures are drawn with matplotlib (no pyplot, no global state) as SVG and embedded as data URIs,
text as paths (no font files needed); the same report gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Iterable

from auditq.report.base import ReportWriter, describe_check, fmt_number, provenance_label
from auditq.result.model import NOT_REQUESTED, AuditReport, FormatResult, verdict_label

ROLE_COLORS = {"base": "#1f77b4", "unlearned": "#d62728", "retrain": "#2ca02c", "reference": "#7f7f7f"}
ROLE_LABELS = {"base": "base (original)", "unlearned": "unlearned", "retrain": "retrain (gold)", "reference": "reference"}
VERDICT_CSS = {"PASS": "pass", "FAIL": "fail", "INCONCLUSIVE": "inconclusive", "UNKNOWN": "unknown", "WAIVED": "waived",
               "NOT_REQUESTED": "notrequested"}
ROC_ATTACK = "mink"

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


def _svg(fig) -> str:
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "auditq", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(fig, fig_id: str, alt: str, caption: str) -> str:
    return (f'<figure id="{_e(fig_id)}"><img alt="{_e(alt)}" src="data:image/svg+xml;base64,{_svg(fig)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _roles(report: AuditReport) -> list[str]:
    seen: dict[str, None] = {}
    for fmt in report.formats:
        for role in fmt.roles:
            if role in ROLE_COLORS and role != "reference":
                seen[role] = None
    return [r for r in ("base", "unlearned", "retrain") if r in seen]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _grouped_bars(ax, formats: list[FormatResult], roles: list[str], metric: str, with_ci: bool = True) -> bool:
    """Bars per format (x) and role (colour) with interval whiskers; False if nothing to draw."""
    drawn = False
    width = 0.8 / max(1, len(roles))
    for k, role in enumerate(roles):
        xs, ys, lows, highs = [], [], [], []
        for i, fmt in enumerate(formats):
            m = fmt.roles.get(role)
            value = getattr(m, metric, None) if m is not None and not m.error else None
            if not _finite(value):
                continue
            interval = (m.intervals or {}).get(metric) if with_ci else None
            xs.append(i - 0.4 + width * (k + 0.5))
            ys.append(value)
            lo, hi = (interval if interval and all(_finite(v) for v in interval) else (value, value))
            lows.append(max(0.0, value - lo))
            highs.append(max(0.0, hi - value))
        if xs:
            drawn = True
            ax.bar(xs, ys, width=width * 0.92, color=ROLE_COLORS[role], label=ROLE_LABELS[role],
                   yerr=[lows, highs] if with_ci else None, capsize=3, error_kw={"elinewidth": 1, "ecolor": "#222"})
    long_names = len(formats) > 5 or any(len(f.format) > 12 for f in formats)  # e.g. relearn:retain:lora=8
    ax.set_xticks(range(len(formats)), [f.format for f in formats], rotation=25 if long_names else 0,
                  ha="right" if long_names else "center", fontsize=8 if long_names else None)
    ax.grid(axis="y", alpha=0.3)
    return drawn


def memorisation_figure(report: AuditReport, metric: str, title: str) -> str | None:
    roles = _roles(report)
    fig = _new_figure(7.5, 3.4)
    ax = fig.add_subplot()
    if not _grouped_bars(ax, list(report.formats), roles, metric):
        return None
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("ROUGE-L F1 (mean)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=len(roles))
    return _figure(fig, f"fig-{metric}", title,
                   f"{_e(title)} by precision; whiskers: bootstrap 95% interval of the mean. The paper's failure shows "
                   "as the unlearned bar rising towards the base bar at low bit widths.")


def retention_figure(report: AuditReport) -> str | None:
    formats = list(report.formats)
    fig = _new_figure(7.5, 3.4)
    ax = fig.add_subplot()
    drawn = False
    styles = {"forget_retention.verbmem": ("#d62728", "o", -0.12, "VerbMem retention"),
              "forget_retention.knowmem": ("#9467bd", "s", 0.12, "KnowMem retention")}
    threshold_label = True
    for check_id, (color, marker, offset, label) in styles.items():
        xs, ys, lows, highs = [], [], [], []
        for i, fmt in enumerate(formats):
            check = next((c for c in fmt.checks if c.check == check_id), None)
            if check is None or not _finite(check.value):
                continue
            xs.append(i + offset)
            ys.append(check.value)
            lo = check.ci_low if _finite(check.ci_low) else check.value
            hi = check.ci_high if _finite(check.ci_high) else check.value
            lows.append(max(0.0, check.value - lo))
            highs.append(max(0.0, hi - check.value))
            ax.hlines(check.threshold, i + offset - 0.1, i + offset + 0.1, colors="#222", linestyles="--", linewidth=1.2,
                      label="threshold" if threshold_label else None)
            threshold_label = False
        if xs:
            drawn = True
            ax.errorbar(xs, ys, yerr=[lows, highs], fmt=marker, color=color, capsize=3, label=label, markersize=6)
    if not drawn:
        return None
    long_names = len(formats) > 5 or any(len(f.format) > 12 for f in formats)  # e.g. relearn:retain:lora=8
    ax.set_xticks(range(len(formats)), [f.format for f in formats], rotation=25 if long_names else 0,
                  ha="right" if long_names else "center", fontsize=8 if long_names else None)
    ax.set_xlim(-0.6, len(formats) - 0.4)
    ax.set_ylim(0, max(1.0, ax.get_ylim()[1]) * 1.2)  # from 0, with room for the legend above the whiskers
    ax.set_ylabel("unlearned / base")
    ax.set_title("Forget retention by format / transformation (must stay below the threshold)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=3)
    return _figure(fig, "fig-retention", "Forget retention by precision",
                   "Retention = unlearned / base at the same precision (the paper's 21% → 83%), with the check's "
                   "bootstrap 95% interval; dashes: the threshold each format is judged against.")


def utility_figure(report: AuditReport) -> str | None:
    roles = _roles(report)
    formats = list(report.formats)
    fig = _new_figure(9.5, 3.4)
    left, right = fig.subplots(1, 2)
    drawn = _grouped_bars(left, formats, roles, "knowmem_retain")
    left.set_ylim(0, 1.05)
    left.set_ylabel("ROUGE-L F1 (mean)")
    left.set_title("Utility: KnowMem on retain")
    drawn_ppl = _grouped_bars(right, formats, roles, "retain_ppl", with_ci=False)
    right.set_ylabel("perplexity")
    right.set_title("Utility: retain-set perplexity")
    if not (drawn or drawn_ppl):
        return None
    left.legend(loc="upper left", fontsize=8, frameon=False, ncols=len(roles))
    return _figure(fig, "fig-utility", "Utility by precision",
                   "What unlearning must not destroy: retain-set KnowMem (with bootstrap 95% intervals) and "
                   "perplexity, by precision.")


def roc_figure(report: AuditReport) -> str | None:
    formats = [f for f in report.formats
               if any((m.mia.get(ROC_ATTACK) and m.mia[ROC_ATTACK].roc_fpr) for m in f.roles.values())]
    if not formats:
        return None
    cols = min(4, len(formats))
    rows = math.ceil(len(formats) / cols)
    fig = _new_figure(2.9 * cols + 0.4, 2.9 * rows + 0.2)
    axes = fig.subplots(rows, cols, squeeze=False)
    for idx, ax in enumerate(axes.flat):
        if idx >= len(formats):
            ax.set_axis_off()
            continue
        fmt = formats[idx]
        ax.plot([0, 1], [0, 1], linestyle=":", color="#999", linewidth=1)
        for role in ("base", "unlearned", "retrain"):
            m = fmt.roles.get(role)
            attack = m.mia.get(ROC_ATTACK) if m is not None and not m.error else None
            if attack is None or not attack.roc_fpr:
                continue
            ax.plot(attack.roc_fpr, attack.roc_tpr, color=ROLE_COLORS[role], linewidth=1.8, drawstyle="default",
                    label=f"{role} AUC {fmt_number(attack.auc)}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_title(f"{fmt.format} (PrivLeak {fmt_number(fmt.privleak, 1)})", fontsize=9)
        ax.set_xlabel("false-positive rate", fontsize=8)
        ax.set_ylabel("true-positive rate", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(loc="lower right", fontsize=7, frameon=False)
    return _figure(fig, "fig-roc", "Membership-inference ROC curves per format",
                   "Min-K% membership inference, forget texts as members and holdout texts as non-members "
                   "(higher score = member). A curve on the diagonal (AUC 0.5) cannot tell them apart; the retrain "
                   "model shows what a model that never saw the forget set looks like.")


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


def _figures(report: AuditReport) -> Iterable[str]:
    for make in (lambda: memorisation_figure(report, "verbmem_forget", "VerbMem on the forget set"),
                 lambda: memorisation_figure(report, "knowmem_forget", "KnowMem on the forget set"),
                 lambda: retention_figure(report), lambda: utility_figure(report), lambda: roc_figure(report)):
        block = make()
        if block:
            yield block


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
