"""What the report's plots need, computed once at measure time and stored in report.json.

- `compact_roc`: the ROC curve of a membership attack as its corner points only (collinear
  points dropped, like scikit-learn's ``drop_intermediate``), so `auditq report` can redraw
  the curves per format without the per-sample scores and report.json stays small.
- `mean_interval`: a percentile-bootstrap interval of a per-sample mean (vectorised numpy,
  seeded), the error bars of the "metric by precision" plots.
"""

from __future__ import annotations

import math

import numpy as np

from auditq.verdict import stats


def compact_roc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(fpr, tpr) of the ROC curve's corners; empty tuples when either group is empty."""
    member = np.asarray(member_scores, dtype=np.float64)
    nonmember = np.asarray(nonmember_scores, dtype=np.float64)
    if member.size == 0 or nonmember.size == 0 or np.isnan(member).any() or np.isnan(nonmember).any():
        return (), ()
    points = stats.roc_points(member, nonmember)
    fpr, tpr = points.fpr, points.tpr
    if fpr.size > 2:
        # keep a point only where the curve changes direction (exact: coordinates are k/n fractions)
        d_fpr, d_tpr = np.diff(fpr), np.diff(tpr)
        turn = (d_fpr[:-1] * d_tpr[1:] - d_tpr[:-1] * d_fpr[1:]) != 0
        keep = np.concatenate([[True], turn, [True]])
        fpr, tpr = fpr[keep], tpr[keep]
    return tuple(float(x) for x in fpr), tuple(float(y) for y in tpr)


def mean_interval(values: np.ndarray | None, seed: int = 0, n_resamples: int = 1000,
                  confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of mean(values); None when there is nothing to resample."""
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        return None
    if values.size == 1:
        return (float(values[0]), float(values[0]))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return (float(low), float(high)) if math.isfinite(low) and math.isfinite(high) else None


def metric_intervals(named: dict[str, np.ndarray | None], seed: int = 0) -> dict[str, tuple[float, float]]:
    """Intervals for every named per-sample array that has one (stable key order)."""
    out: dict[str, tuple[float, float]] = {}
    for name, values in named.items():
        interval = mean_interval(values, seed=seed)
        if interval is not None:
            out[name] = interval
    return out
