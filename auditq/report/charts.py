"""The charts of report.html, built as matplotlib Figures (no pyplot, no global state).

Kept apart from the page writer so that tests can inspect the Figure objects (axis limits against
the plotted data, legend positions) and not only the SVG bytes. Every chart:

- fits its y axis to everything it draws (values, interval whiskers, thresholds, and the 0 / 1
  reference levels), so a negative floored retention or a value above 1 is on the chart, not
  clipped off below the axis;
- puts its legend outside the plotting area (figure legends in constrained layout), never over the
  bars or points;
- says which retention it plots: the checks judge the floored retention by default
  (auditq/verdict/retention.py), the raw unlearned / base ratio only under ``retention = "ratio"``;
  the raw ratio, which is always reported (check extras ``raw_ratio``), is drawn beside the floored
  value as a hollow marker and labelled as not judged.

SVG output: text as paths (no font files), fixed hash salt and no date, so the same report gives the
same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from typing import Any

from auditq.report.base import fmt_number
from auditq.result.model import AuditReport, CheckResult, FormatResult

ROLE_COLORS = {"base": "#1f77b4", "unlearned": "#d62728", "retrain": "#2ca02c", "reference": "#7f7f7f"}
ROLE_LABELS = {"base": "base (original)", "unlearned": "unlearned", "retrain": "retrain (gold)", "reference": "reference"}
ROC_ATTACK = "mink"
#: forget_retention check -> (colour, marker, x offset of the judged value, legend name)
RETENTION_SERIES = {"forget_retention.verbmem": ("#d62728", "o", -0.21, "VerbMem"),
                    "forget_retention.knowmem": ("#9467bd", "s", 0.07, "KnowMem")}
RAW_OFFSET = 0.12
THRESHOLD_LABEL = "threshold (judged)"  # the hollow raw-ratio marker sits this far right of its judged value
PAPER_NOTE = ("The paper's 21% → 83% are stated as shares of the original model's knowledge, i.e. of the raw "
              "unlearned / base kind")


@dataclass(frozen=True)
class Chart:
    """One figure of the page: its element id, alt text, caption (already HTML) and the Figure."""

    fig_id: str
    alt: str
    caption: str
    figure: Any  # matplotlib.figure.Figure


def _e(value: Any) -> str:
    from auditq.report.escape import visible

    return html.escape(visible(value), quote=True)


def svg_base64(fig) -> str:
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "auditq", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def chart_html(chart: Chart) -> str:
    return (f'<figure id="{_e(chart.fig_id)}"><img alt="{_e(chart.alt)}" '
            f'src="data:image/svg+xml;base64,{svg_base64(chart.figure)}"><figcaption>{chart.caption}</figcaption></figure>')


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fit_ylim(ax, values: list[float], always: tuple[float, ...] = (0.0, 1.0), bars: bool = False) -> None:
    """y limits that hold every drawn value and the reference levels `always`, with a margin; bars keep
    their baseline at the bottom edge unless something lies below 0."""
    points = [v for v in (*values, *always) if _finite(v)]
    low, high = min(points), max(points)
    pad = 0.06 * (high - low or 1.0)
    ax.set_ylim(low if bars and low >= 0 else low - pad, high + pad)


def _xticks(ax, formats: list[FormatResult]) -> None:
    long_names = len(formats) > 5 or any(len(f.format) > 12 for f in formats)  # e.g. relearn:retain:lora=8
    ax.set_xticks(range(len(formats)), [f.format for f in formats], rotation=25 if long_names else 0,
                  ha="right" if long_names else "center", fontsize=8 if long_names else None)
    ax.set_xlim(-0.6, len(formats) - 0.4)


def _figure_legend(fig, axes, ncols: int, loc: str = "outside right upper", order=None) -> None:
    """One legend for the figure, outside every axes; none (and no warning) when nothing is labelled.
    `order(label)` sorts the entries (stable), e.g. the judged values before the reference lines."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    labels = sorted(handles, key=order) if order else list(handles)
    if labels:
        fig.legend([handles[label] for label in labels], labels, loc=loc, fontsize=8, frameon=False, ncols=ncols)


def roles_of(report: AuditReport) -> list[str]:
    seen = {role for fmt in report.formats for role in fmt.roles}
    return [r for r in ("base", "unlearned", "retrain") if r in seen]


def _grouped_bars(ax, formats: list[FormatResult], roles: list[str], metric: str, with_ci: bool = True) -> list[float]:
    """Bars per format (x) and role (colour) with interval whiskers; every drawn y (bar tops and
    whisker ends) for the axis limits, empty if nothing was drawn."""
    drawn: list[float] = []
    width = 0.8 / max(1, len(roles))
    for k, role in enumerate(roles):
        xs, ys, lows, highs = [], [], [], []
        for i, fmt in enumerate(formats):
            m = fmt.roles.get(role)
            value = getattr(m, metric, None) if m is not None and not m.error else None
            if not _finite(value):
                continue
            interval = (m.intervals or {}).get(metric) if with_ci else None
            lo, hi = (interval if interval and all(_finite(v) for v in interval) else (value, value))
            xs.append(i - 0.4 + width * (k + 0.5))
            ys.append(value)
            lows.append(max(0.0, value - lo))
            highs.append(max(0.0, hi - value))
            drawn += [value, min(lo, value), max(hi, value)]
        if xs:
            ax.bar(xs, ys, width=width * 0.92, color=ROLE_COLORS[role], label=ROLE_LABELS[role],
                   yerr=[lows, highs] if with_ci else None, capsize=3, error_kw={"elinewidth": 1, "ecolor": "#222"})
    _xticks(ax, formats)
    ax.grid(axis="y", alpha=0.3)
    return drawn


def memorisation_chart(report: AuditReport, metric: str, title: str) -> Chart | None:
    roles = roles_of(report)
    fig = _new_figure(8.5, 3.4)
    ax = fig.add_subplot()
    drawn = _grouped_bars(ax, list(report.formats), roles, metric)
    if not drawn:
        return None
    _fit_ylim(ax, drawn, bars=True)
    ax.set_ylabel("ROUGE-L F1 (mean)")
    ax.set_title(title)
    _figure_legend(fig, [ax], ncols=1)
    return Chart(f"fig-{metric}", title, f"{_e(title)} by precision; whiskers: bootstrap 95% interval of the mean. "
                 "The paper's failure shows as the unlearned bar rising towards the base bar at low bit widths.", fig)


def retention_mode(report: AuditReport) -> str:
    """"floor" or "ratio": what the forget_retention checks of this report judged.

    The checks record it (extras ``retention``, schema 1.2); else the report's config says; reports
    older than schema 1.2 had only the raw ratio.
    """
    modes = {c.extras.get("retention") for c in report.all_checks()
             if c.check.startswith("forget_retention.") and c.extras.get("retention")}
    if len(modes) == 1:
        return modes.pop()
    configured = (report.config or {}).get("retention")
    if configured in ("floor", "ratio"):
        return configured
    try:
        major, minor = (int(part) for part in str(report.schema_version).split(".")[:2])
    except ValueError:
        return "floor"
    return "floor" if (major, minor) >= (1, 2) else "ratio"


def _retention_check(fmt: FormatResult, check_id: str) -> CheckResult | None:
    check = next((c for c in fmt.checks if c.check == check_id), None)
    return check if check is not None and _finite(check.value) else None


def _retention_series(ax, formats: list[FormatResult], check_id: str, floored: bool) -> list[float]:
    """One metric's judged values (filled, with interval and threshold dash) and, in floor mode, its raw
    ratio (hollow); every drawn y, empty if nothing was drawn."""
    color, marker, offset, name = RETENTION_SERIES[check_id]
    first = THRESHOLD_LABEL not in ax.get_legend_handles_labels()[1]
    xs, ys, lows, highs, raw_xs, raws, drawn = [], [], [], [], [], [], []
    for i, fmt in enumerate(formats):
        check = _retention_check(fmt, check_id)
        if check is None:
            continue
        lo = check.ci_low if _finite(check.ci_low) else check.value
        hi = check.ci_high if _finite(check.ci_high) else check.value
        xs.append(i + offset)
        ys.append(check.value)
        lows.append(max(0.0, check.value - lo))
        highs.append(max(0.0, hi - check.value))
        drawn += [check.value, lo, hi]
        if _finite(check.threshold):
            ax.hlines(check.threshold, i + offset - 0.1, i + offset + 0.1, colors="#222", linestyles="--",
                      linewidth=1.2, label=THRESHOLD_LABEL if first else None)
            drawn.append(check.threshold)
            first = False
        raw = (check.extras or {}).get("raw_ratio")
        if floored and _finite(raw):
            raw_xs.append(i + offset + RAW_OFFSET)
            raws.append(raw)
            drawn.append(raw)
    if xs:
        ax.errorbar(xs, ys, yerr=[lows, highs], fmt=marker, color=color, capsize=3, markersize=6,
                    label=f"{name}: {'floored retention' if floored else 'unlearned / base'} (judged)")
    if raws:
        ax.plot(raw_xs, raws, linestyle="none", marker=marker, markersize=6, markerfacecolor="none",
                markeredgecolor=color, label=f"{name}: raw unlearned / base (not judged)")
    return drawn


def _retention_caption(floored: bool) -> str:
    if not floored:
        return ("Retention = unlearned / base at the same precision (the raw ratio; config retention = \"ratio\"), "
                "the value the forget_retention checks judge, with the check's bootstrap 95% interval; dashes: the "
                f"threshold each format is judged against. {PAPER_NOTE}.")
    return ("Filled markers: floored retention = (unlearned − F) / (base − F) on the forget set, where F is base's mean "
            "score on the holdout records that no model was trained on; 1 = as much as base, 0 = the level of text "
            "never seen, below 0 = under that level. It is the value the forget_retention checks judge, shown with "
            "the check's bootstrap 95% interval; dashes: the threshold each format is judged against. Hollow "
            "markers: the raw ratio unlearned / base at the same precision, reported but not judged (on templated "
            f"text it stays above 0 even for a model that never saw the forget set). {PAPER_NOTE}: compare them "
            "with the hollow markers, not with the floored values.")


def _retention_legend_order(label: str) -> int:
    """Judged values, raw ratios, the threshold, then the 0 / 1 reference lines."""
    if label == THRESHOLD_LABEL:
        return 2
    return 1 if "not judged" in label else 0 if "(judged)" in label else 3


def retention_chart(report: AuditReport) -> Chart | None:
    formats = list(report.formats)
    floored = retention_mode(report) == "floor"
    fig = _new_figure(9.5, 3.6)
    ax = fig.add_subplot()
    drawn: list[float] = []
    for check_id in RETENTION_SERIES:
        drawn += _retention_series(ax, formats, check_id, floored)
    if not drawn:
        return None
    ax.axhline(0.0, color="#555", linewidth=0.8, label="0: never-seen level" if floored else "0: nothing retained")
    ax.axhline(1.0, color="#555", linewidth=0.8, linestyle=":", label="1: as much as base")
    _xticks(ax, formats)
    _fit_ylim(ax, drawn)
    ax.set_ylabel("floored retention" if floored else "unlearned / base")
    ax.set_title("Forget retention by format (judged: must stay below the threshold)")
    ax.grid(axis="y", alpha=0.3)
    _figure_legend(fig, [ax], ncols=1, order=_retention_legend_order)
    alt = "Floored forget retention by precision" if floored else "Forget retention (unlearned / base) by precision"
    return Chart("fig-retention", alt, _e(_retention_caption(floored)), fig)


def utility_chart(report: AuditReport) -> Chart | None:
    roles = roles_of(report)
    formats = list(report.formats)
    fig = _new_figure(10.5, 3.6)
    left, right = fig.subplots(1, 2)
    drawn = _grouped_bars(left, formats, roles, "knowmem_retain")
    drawn_ppl = _grouped_bars(right, formats, roles, "retain_ppl", with_ci=False)
    if not (drawn or drawn_ppl):
        return None
    for ax, values, always in ((left, drawn, (0.0, 1.0)), (right, drawn_ppl, (0.0,))):
        if values:
            _fit_ylim(ax, values, always, bars=True)
        else:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="#555")
    left.set_ylabel("ROUGE-L F1 (mean)")
    left.set_title("Utility: KnowMem on retain")
    right.set_ylabel("perplexity")
    right.set_title("Utility: retain-set perplexity")
    _figure_legend(fig, [left, right], ncols=max(1, len(roles)), loc="outside upper center")
    return Chart("fig-utility", "Utility by precision",
                 "What unlearning must not destroy: retain-set KnowMem (with bootstrap 95% intervals) and "
                 "perplexity, by precision.", fig)


def _roc_panel(ax, fmt: FormatResult) -> None:
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999", linewidth=1)
    for role in ("base", "unlearned", "retrain"):
        m = fmt.roles.get(role)
        attack = m.mia.get(ROC_ATTACK) if m is not None and not m.error else None
        if attack is None or not attack.roc_fpr:
            continue
        ax.plot(attack.roc_fpr, attack.roc_tpr, color=ROLE_COLORS[role], linewidth=1.8,
                label=f"{role} AUC {fmt_number(attack.auc)}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_title(f"{fmt.format} (PrivLeak {fmt_number(fmt.privleak, 1)})", fontsize=9)
    ax.set_xlabel("false-positive rate", fontsize=8)
    ax.set_ylabel("true-positive rate", fontsize=8)
    ax.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[1]:  # below the panel, off the curves
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=7, frameon=False)


def roc_chart(report: AuditReport) -> Chart | None:
    formats = [f for f in report.formats
               if any((m.mia.get(ROC_ATTACK) and m.mia[ROC_ATTACK].roc_fpr) for m in f.roles.values())]
    if not formats:
        return None
    cols = min(4, len(formats))
    rows = math.ceil(len(formats) / cols)
    fig = _new_figure(2.9 * cols + 0.4, 3.5 * rows + 0.2)
    axes = fig.subplots(rows, cols, squeeze=False)
    for idx, ax in enumerate(axes.flat):
        if idx < len(formats):
            _roc_panel(ax, formats[idx])
        else:
            ax.set_axis_off()
    return Chart("fig-roc", "Membership-inference ROC curves per format",
                 "Min-K% membership inference, forget texts as members and holdout texts as non-members "
                 "(higher score = member). A curve on the diagonal (AUC 0.5) cannot tell them apart; the retrain "
                 "model shows what a model that never saw the forget set looks like.", fig)


def charts(report: AuditReport) -> list[Chart]:
    """Every chart the report has data for, in page order."""
    made = (memorisation_chart(report, "verbmem_forget", "VerbMem on the forget set"),
            memorisation_chart(report, "knowmem_forget", "KnowMem on the forget set"),
            retention_chart(report), utility_chart(report), roc_chart(report))
    return [chart for chart in made if chart is not None]


def figures(report: AuditReport) -> list[str]:
    """The charts as <figure> blocks with the SVG embedded (a data URI)."""
    return [chart_html(chart) for chart in charts(report)]
