"""Statistics for the audit: ROC AUC / TPR at low FPR for membership inference, PrivLeak, and
percentile-bootstrap confidence intervals over per-sample arrays.

Convention: membership scores are "higher = more likely a member" (see auditq.probes.mia), and
members (forget texts) are labelled 1 in `roc_auc` / `fast_auc` / `tpr_at_fpr`; `muse_auc` and
`privleak` follow MUSE instead (forget labelled 0), so PrivLeak is MUSE's number. Scores may contain +-inf (a log-prob of -inf from a
broken quantized model); they are ordered as expected. NaN scores are an error: they have no
place in a ranking, and silently dropping them would change n.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.stats import bootstrap
from sklearn.metrics import roc_auc_score, roc_curve


@dataclass(frozen=True)
class RocPoints:
    """An ROC curve for plotting: false- and true-positive rates at every threshold."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def _scores(member_scores: Sequence[float] | np.ndarray,
            nonmember_scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    member = np.asarray(member_scores, dtype=np.float64).ravel()
    nonmember = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if member.size == 0 or nonmember.size == 0:
        raise ValueError(f"ROC needs members and non-members (got {member.size} and {nonmember.size})")
    if np.isnan(member).any() or np.isnan(nonmember).any():
        raise ValueError("membership scores contain NaN")
    return member, nonmember


def _labelled(member: np.ndarray, nonmember: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (members 1) and scores with +-inf moved just past the finite range (same order).

    scikit-learn's ROC code subtracts scores, which turns inf into NaN; only the order
    matters to an ROC curve, so this changes nothing else.
    """
    scores = np.concatenate([member, nonmember])
    finite = scores[np.isfinite(scores)]
    if finite.size < scores.size:
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        scores = np.where(scores == np.inf, high + 1.0, np.where(scores == -np.inf, low - 1.0, scores))
    labels = np.concatenate([np.ones(member.size, dtype=np.int64), np.zeros(nonmember.size, dtype=np.int64)])
    return labels, scores


def roc_auc(member_scores: Sequence[float] | np.ndarray, nonmember_scores: Sequence[float] | np.ndarray) -> float:
    """ROC AUC with members labelled 1 (scikit-learn): 0.5 = chance, 1.0 = members all score higher."""
    member, nonmember = _scores(member_scores, nonmember_scores)
    labels, scores = _labelled(member, nonmember)
    return float(roc_auc_score(labels, scores))


def fast_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """Rank-based AUC (Mann-Whitney U / (n1*n0), ties count 1/2), equal to roc_auc.

    Light enough to call thousands of times inside a bootstrap: no validation, one sort of
    the non-members and two binary searches. Returns NaN if either group is empty.
    """
    member = np.asarray(member_scores, dtype=np.float64)
    nonmember = np.sort(np.asarray(nonmember_scores, dtype=np.float64))
    if member.size == 0 or nonmember.size == 0:
        return float("nan")
    below = np.searchsorted(nonmember, member, side="left")
    not_above = np.searchsorted(nonmember, member, side="right")
    wins2 = int((below + not_above).sum())  # 2*(#nonmembers below) + 1*(#ties), summed over members
    return wins2 / (2.0 * member.size * nonmember.size)


def tpr_at_fpr(member_scores: Sequence[float] | np.ndarray, nonmember_scores: Sequence[float] | np.ndarray,
               fpr: float = 0.01) -> float:
    """Largest TPR on the ROC curve at a false-positive rate <= `fpr` (low-FPR view of an attack).

    With n non-members the smallest non-zero FPR is 1/n, so for fpr < 1/n this is the TPR
    at FPR 0: report n alongside it.
    """
    if not 0 <= fpr <= 1:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    points = roc_points(member_scores, nonmember_scores)
    return float(points.tpr[points.fpr <= fpr + 1e-12].max())


def roc_points(member_scores: Sequence[float] | np.ndarray,
               nonmember_scores: Sequence[float] | np.ndarray) -> RocPoints:
    """Every point of the ROC curve (scikit-learn roc_curve, no point dropped), for plots."""
    member, nonmember = _scores(member_scores, nonmember_scores)
    labels, scores = _labelled(member, nonmember)
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    return RocPoints(fpr=fpr, tpr=tpr, thresholds=thresholds)


def muse_auc(member_scores: Sequence[float] | np.ndarray, nonmember_scores: Sequence[float] | np.ndarray) -> float:
    """The AUC exactly as MUSE computes it (metrics/privleak.py, key ``forget_holdout_Min-40%``).

    MUSE labels the FORGET texts 0 and the HOLDOUT texts 1 and ranks them by -Min-K% (= the mean
    of the lowest k log-probs = this module's member score), i.e. ``roc_curve(y, -mink)``. So its
    AUC is P(holdout scores higher than forget), ties 1/2: 1 - roc_auc(members, nonmembers). A model
    that memorised the forget set has AUC_MUSE near 0; one that never saw it, near 0.5.
    """
    member, nonmember = _scores(member_scores, nonmember_scores)
    return fast_auc(nonmember, member)  # holdout in the "positive" role; +-inf sort as expected


def privleak(auc_unlearned: float, auc_reference: float) -> float:
    """MUSE's PrivLeak in percent from MUSE-convention AUCs (`muse_auc`): (AUC_unl - AUC_ref) / AUC_ref * 100.

    AUC_ref is the retrain model's AUC, or 0.5 without one (as MUSE does). Near 0 is good;
    NEGATIVE = under-unlearned (the forget set still looks like training data: MUSE's target
    models score about -100), positive = over-unlearned. NaN when the reference AUC is 0 or
    either AUC is not finite.
    """
    if not (math.isfinite(auc_unlearned) and math.isfinite(auc_reference)) or auc_reference == 0:
        return float("nan")
    return (auc_unlearned - auc_reference) / auc_reference * 100.0


def muse_privleak(auc_unlearned: float, auc_reference: float) -> float:
    """MUSE's PrivLeak from AUCs in THIS module's convention (members labelled 1, higher = member).

    AUC_MUSE = 1 - AUC_here for both models, then `privleak`: strongly negative = under-unlearned.
    """
    return privleak(1.0 - auc_unlearned, 1.0 - auc_reference)


def ratio_of_means(num: Sequence[float] | np.ndarray, den: Sequence[float] | np.ndarray) -> float:
    """mean(num) / mean(den), e.g. retention = mean(unlearned metric) / mean(base metric).

    NaN (not an exception, not a warning) when either is empty or the denominator mean is 0,
    so it can be used as a bootstrap statistic.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    if num.size == 0 or den.size == 0:
        return float("nan")
    denominator = float(den.mean())
    if denominator == 0 or not math.isfinite(denominator):
        return float("nan")
    return float(num.mean()) / denominator


def bootstrap_ci(statistic: Callable[..., float], sizes: Sequence[int] | int, seed: int,
                 n_resamples: int = 1000, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` by resampling INDEX arrays (scipy.stats.bootstrap).

    - One size (paired data): `statistic(i)` gets one index array and indexes every paired
      per-sample array with it (e.g. unlearned[i] / base[i]), so pairs stay together.
    - Two sizes (independent groups, e.g. forget vs holdout): `statistic(i, j)` gets one
      index array per group, each resampled within its group (stratified), so every
      resample keeps both groups at their original size.

    Deterministic for a seed. Resamples whose statistic is NaN (a zero denominator, say) are
    left out of the percentiles; if all are NaN the interval is (nan, nan). A constant
    statistic gives (v, v). Warnings raised while evaluating are not passed on.
    """
    sizes = (sizes,) if isinstance(sizes, (int, np.integer)) else tuple(int(s) for s in sizes)
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"bootstrap needs at least one sample per group, got sizes {sizes}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    data = tuple(np.arange(s) for s in sizes)

    def stat(*indices: np.ndarray) -> float:
        value = statistic(*indices)
        return float(value) if value is not None else float("nan")

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if all(s == 1 for s in sizes):  # nothing to resample (scipy refuses one observation)
            value = stat(*data)
            return (value, value)
        result = bootstrap(data, stat, n_resamples=n_resamples, vectorized=False, paired=False,
                           confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
        distribution = np.asarray(result.bootstrap_distribution, dtype=np.float64)
        distribution = distribution[~np.isnan(distribution)]
        if distribution.size == 0:
            return (float("nan"), float("nan"))
        alpha = (1 - confidence) / 2
        low, high = np.percentile(distribution, [100 * alpha, 100 * (1 - alpha)])
    return (float(low), float(high))


def auc_ci(member_scores: np.ndarray, nonmember_scores: np.ndarray, seed: int,
           n_resamples: int = 1000, confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval of the AUC, members and non-members resampled separately."""
    member, nonmember = _scores(member_scores, nonmember_scores)
    return bootstrap_ci(lambda i, j: fast_auc(member[i], nonmember[j]), (member.size, nonmember.size),
                        seed=seed, n_resamples=n_resamples, confidence=confidence)
