"""report.html's charts show every value: the axes hold all drawn data (negative retention and values
above 1 included), legends sit outside the plotting area, the retention chart says which retention
it plots, and rendering raises no warning."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
from chart_reports import EDGE_RETENTION, edge_report

from auditq.report import charts
from auditq.report.html import HtmlWriter


def _drawn_ys(ax) -> list[float]:
    """Every y the axes draws in data coordinates: lines and markers, whiskers and dashes, bars."""
    ys = [float(y) for line in ax.lines for y in line.get_ydata()]
    for collection in ax.collections:
        for segment in getattr(collection, "get_segments", lambda: [])():
            ys += [float(y) for _, y in segment]
    for patch in ax.patches:
        ys += [patch.get_y(), patch.get_y() + patch.get_height()]
    return ys


def _built(report) -> dict[str, charts.Chart]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels found" and every other one
        made = {chart.fig_id: chart for chart in charts.charts(report)}
        for chart in made.values():
            charts.svg_base64(chart.figure)  # the layout runs here
    return made


@pytest.mark.parametrize("mode", ["floor", "ratio"])
def test_every_drawn_value_is_inside_the_axes(mode):
    made = _built(edge_report(mode))
    assert set(made) == {"fig-verbmem_forget", "fig-knowmem_forget", "fig-retention", "fig-utility", "fig-roc"}
    for fig_id, chart in made.items():
        for ax in chart.figure.axes:
            if not ax.axison:
                continue
            low, high = ax.get_ylim()
            ys = _drawn_ys(ax)
            assert all(low <= y <= high for y in ys), (fig_id, (low, high), min(ys, default=None), max(ys, default=None))
    retention = made["fig-retention"].figure.axes[0]
    low, high = retention.get_ylim()
    if mode == "floor":  # fp VerbMem -0.188 [-0.31, -0.07] and rtn4 1.32 [1.1, 1.55] are on the chart, with margin
        assert low < -0.45 and high > 1.55
        assert any(-0.188 in line.get_ydata() for line in retention.lines)
    else:
        assert low < 0 < 1 < high


def test_retention_chart_names_the_retention_it_plots():
    floored = _built(edge_report("floor"))["fig-retention"]
    ax = floored.figure.axes[0]
    assert ax.get_ylabel() == "floored retention"
    labels = [t.get_text() for legend in floored.figure.legends for t in legend.get_texts()]
    assert "VerbMem: floored retention (judged)" in labels and "VerbMem: raw unlearned / base (not judged)" in labels
    # the raw ratio is drawn too (hollow), at the values the checks report in extras.raw_ratio
    raw = {float(y) for line in ax.lines if line.get_markerfacecolor() == "none" for y in line.get_ydata()}
    assert raw == {numbers[3] for numbers in EDGE_RETENTION.values()}
    assert "(unlearned − F) / (base − F)" in floored.caption and "not judged" in floored.caption
    # the paper's 21% -> 83% is tied to the raw ratio, never presented as the floored value
    assert "the paper's 21% → 83%)" not in floored.caption and "compare them with the hollow markers" in floored.caption

    ratio = _built(edge_report("ratio"))["fig-retention"]
    ax = ratio.figure.axes[0]
    assert ax.get_ylabel() == "unlearned / base"
    assert not [line for line in ax.lines if line.get_markerfacecolor() == "none"]
    assert "floored" not in ratio.caption and "raw ratio" in ratio.caption


def test_retention_mode_from_checks_config_or_schema():
    assert charts.retention_mode(edge_report("ratio")) == "ratio"
    old = edge_report("floor")
    stripped = [replace(f, checks=tuple(replace(c, extras={}) for c in f.checks)) for f in old.formats]
    bare = replace(old, formats=tuple(stripped), config={})
    assert charts.retention_mode(bare) == "floor"  # schema 1.2: floored by default
    assert charts.retention_mode(replace(bare, schema_version="1.1")) == "ratio"  # before 1.2: the raw ratio


def test_legends_sit_outside_every_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for fig_id, chart in _built(edge_report("floor", retain_knowmem=True)).items():
        fig = chart.figure
        FigureCanvasAgg(fig).draw()
        renderer = fig.canvas.get_renderer()
        axes = [ax for ax in fig.axes if ax.axison]
        assert fig.legends or any(ax.get_legend() for ax in axes), fig_id
        for legend in fig.legends:  # clear of every plot and of its title, tick labels and axis labels
            box = legend.get_window_extent(renderer)
            assert not any(box.overlaps(ax.get_tightbbox(renderer)) for ax in axes), fig_id
            assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
        for owner in axes:  # a panel's own legend (ROC) sits below its panel, clear of every plot area
            if owner.get_legend() is not None:
                box = owner.get_legend().get_window_extent(renderer)
                assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in axes), fig_id


def test_utility_chart_without_retain_knowmem_renders_without_warnings():
    made = _built(edge_report("floor", retain_knowmem=False))
    left, right = made["fig-utility"].figure.axes
    assert not left.patches and [t.get_text() for t in left.texts] == ["not measured"]
    assert right.patches  # perplexity bars
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        page = HtmlWriter().render(edge_report("floor"))
    assert 'id="fig-utility"' in page and 'id="fig-retention"' in page
