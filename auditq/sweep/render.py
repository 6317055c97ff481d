"""sweep.json, sweep.md and sweep.html: the ranked candidates, per check and overall, and the plot of forget
retention at fp and at the worst quantized format against utility (one pair of points per candidate).

Every free-text field (labels, paths) is escaped (auditq.report.escape); the SVG is drawn as report.html's charts
are (auditq.report.charts: no pyplot, text as paths, fixed hash salt), so the same sweep gives the same bytes.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from auditq.report.escape import md
from auditq.sweep.rank import FAMILIES


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _plain(value: Any) -> Any:
    """JSON without NaN/Infinity (not JSON): None stands for 'not measured'."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def render_json(summary: dict[str, Any]) -> str:
    return json.dumps(_plain(summary), indent=2, sort_keys=False, allow_nan=False) + "\n"


HEADER = ("rank", "candidate", "verdict", *(f"{f} (worst)" for f in FAMILIES), "retention fp", "retention worst",
          "worst format", "max recovery", "utility at fp", "measured here")


def _cells(row: dict[str, Any]) -> list[str]:
    checks = row["checks"]
    return [str(row["rank"]), row["label"], row["verdict"],
            *[f"{checks[f]['verdict']} ({_number(checks[f]['value'])})" if f in checks else "n/a" for f in FAMILIES],
            _number(row["forget_retention_fp"]), _number(row["forget_retention_worst"]), row["worst_format"] or "n/a",
            _number(row["recovery"]), _number(row["utility"]), ", ".join(row["measured_roles"]) or "none (cached)"]


def render_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# auditq sweep: {len(summary['candidates'])} candidate(s) against {md(summary['base'])}", "",
             f"Gate: --require {summary['require']}; exit code {summary['exit_code']}.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(md(c) for c in _cells(row)) + " |" for row in summary["candidates"]]
    lines += ["", "## Ranking per check", ""]
    lines += [f"- {family}: {', '.join(md(x) for x in order)}" for family, order in summary["ranking_per_check"].items()]
    lines += ["", "Each candidate's own report: `<label>/report.md`.", ""]
    return "\n".join(lines)


def render_html(summary: dict[str, Any], rows: list) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in _cells(row)) +
                   f'<td><a href="{e(row["label"])}/report.html">report</a></td></tr>' for row in summary["candidates"])
    per_check = "".join(f"<li>{e(f)}: {e(', '.join(order))}</li>" for f, order in summary["ranking_per_check"].items())
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>auditq sweep</title></head><body>"
            f"<h1>auditq sweep: {len(rows)} candidate(s) against {e(str(summary['base']))}</h1>"
            f"<p>Gate: --require {e(summary['require'])}; exit code {summary['exit_code']}. Sorted by robustness: "
            "worst verdict across formats, then forget retention at the worst quantized format, at fp, then utility."
            f"</p><table border=\"1\"><thead><tr>{head}<th>own report</th></tr></thead><tbody>{body}</tbody></table>"
            f"<h2>Ranking per check</h2><ul>{per_check}</ul>{plot_html(rows)}</body></html>\n")


def plot_html(rows: list) -> str:
    """Forget retention (fp: hollow, worst quantized format: filled, joined) against utility, per candidate."""
    from auditq.report.charts import Chart, _new_figure, chart_html

    points = [r for r in rows if r.utility is not None and math.isfinite(r.utility)]
    if not points:
        return "<p>No candidate has a utility value: no plot.</p>"
    fig = _new_figure(6.5, 4.2)
    ax = fig.add_subplot()
    for row in points:
        ys = [(y, style) for y, style in ((row.retention_fp, "none"), (row.retention_worst, "C3")) if y is not None]
        if len(ys) == 2:
            ax.plot([row.utility] * 2, [ys[0][0], ys[1][0]], color="0.6", linewidth=1)
        for y, face in ys:
            ax.plot([row.utility], [y], marker="o", markerfacecolor=face, markeredgecolor="C3", linestyle="none")
        ax.annotate(row.label, (row.utility, max(y for y, _ in ys) if ys else 0), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xlabel("utility (check value at fp)")
    ax.set_ylabel("forget retention")
    ax.plot([], [], marker="o", markerfacecolor="none", markeredgecolor="C3", linestyle="none", label="at fp")
    ax.plot([], [], marker="o", color="C3", linestyle="none", label="at the worst quantized format")
    fig.legend(loc="outside right upper", fontsize=8)
    chart = Chart(fig_id="sweep-retention-utility", alt="forget retention at fp and at the worst format vs utility",
                  caption="Forget retention at fp (hollow) and at the worst quantized format (filled) against "
                          "utility, one candidate per vertical pair: lower and further right is better.",
                  figure=fig)
    return chart_html(chart)
