"""auditq.verdict.stats: AUC / TPR at low FPR against scikit-learn and hand data, PrivLeak, bootstrap intervals."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import roc_auc_score

from auditq.verdict import stats


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _sklearn_auc(member, nonmember) -> float:
    return roc_auc_score([1] * len(member) + [0] * len(nonmember), np.concatenate([member, nonmember]))


@pytest.mark.parametrize("seed", range(6))
def test_fast_auc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    member = rng.integers(0, 6, size=rng.integers(1, 40)).astype(float) + 0.3 * seed
    nonmember = rng.integers(0, 5, size=rng.integers(1, 40)).astype(float)
    expected = _sklearn_auc(member, nonmember)
    assert stats.fast_auc(member, nonmember) == pytest.approx(expected, abs=1e-12)
    assert stats.roc_auc(member, nonmember) == pytest.approx(expected, abs=1e-12)


def test_auc_hand_values():
    assert stats.roc_auc([3, 4], [1, 2]) == 1.0
    assert stats.roc_auc([1, 2], [3, 4]) == 0.0
    assert stats.fast_auc(np.array([1.0]), np.array([1.0])) == 0.5          # a tie counts 1/2
    # pairs: (2>1) (2=2) (2<3) (5>1) (5>2) (5>3) -> (4 + 0.5) / 6
    assert stats.fast_auc(np.array([2.0, 5.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(4.5 / 6)
    assert np.isnan(stats.fast_auc(np.array([]), np.array([1.0])))


def test_infinite_scores_keep_their_order_and_nan_is_refused():
    member = np.array([np.inf, 0.5, -1.0])
    nonmember = np.array([0.2, -np.inf, 0.7])
    finite = _sklearn_auc(np.array([1e9, 0.5, -1.0]), np.array([0.2, -1e9, 0.7]))
    assert stats.roc_auc(member, nonmember) == pytest.approx(finite)
    assert stats.fast_auc(member, nonmember) == pytest.approx(finite)
    assert stats.tpr_at_fpr(member, nonmember, 0.0) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        stats.roc_auc([np.nan, 1.0], [0.0])
    with pytest.raises(ValueError):
        stats.roc_auc([], [0.0])


def test_tpr_at_fpr_hand_data():
    member = [0.9, 0.8, 0.7, 0.2]
    nonmember = [0.85, 0.3, 0.1, 0.05]
    # descending thresholds: 0.9 (tpr .25, fpr 0), 0.85 (.25, .25), 0.8 (.5, .25), 0.7 (.75, .25),
    # 0.3 (.75, .5), 0.2 (1, .5), ...
    assert stats.tpr_at_fpr(member, nonmember, 0.0) == 0.25
    assert stats.tpr_at_fpr(member, nonmember, 0.01) == 0.25
    assert stats.tpr_at_fpr(member, nonmember, 0.25) == 0.75
    assert stats.tpr_at_fpr(member, nonmember, 0.49) == 0.75
    assert stats.tpr_at_fpr(member, nonmember, 0.5) == 1.0
    # a member tied with a non-member at the top is not counted at FPR 0
    assert stats.tpr_at_fpr([1.0, 0.5], [1.0, 0.0], 0.01) == 0.0
    with pytest.raises(ValueError):
        stats.tpr_at_fpr(member, nonmember, 1.5)


def test_roc_points_for_plots():
    rng = np.random.default_rng(0)
    points = stats.roc_points(rng.normal(1, 1, 50), rng.normal(0, 1, 60))
    assert points.fpr.shape == points.tpr.shape == points.thresholds.shape
    assert points.fpr[0] == 0 and points.tpr[0] == 0 and points.fpr[-1] == 1 and points.tpr[-1] == 1
    assert np.all(np.diff(points.fpr) >= 0) and np.all(np.diff(points.tpr) >= 0)
    with pytest.raises(Exception):
        points.fpr = None   # frozen


def _muse_privleak_independently(forget_minus_mink, holdout_minus_mink, retrain=None) -> float:
    """MUSE's eval.py + metrics/privleak.py, re-derived with scikit-learn: Min-40% = -mean(lowest 40% logp) per text,
    y = 0 for forget and 1 for holdout, roc_curve(y, -Min-40%), auc(fpr, tpr); PrivLeak = (unl - ret) / ret * 100."""
    from sklearn.metrics import auc, roc_curve

    def muse_auc(forget_min40, holdout_min40):
        y = np.concatenate([np.zeros(len(forget_min40)), np.ones(len(holdout_min40))])
        fpr, tpr, _ = roc_curve(y, -np.concatenate([forget_min40, holdout_min40]))
        return auc(fpr, tpr)

    unl = muse_auc(forget_minus_mink, holdout_minus_mink)
    ret = 0.5 if retrain is None else muse_auc(*retrain)
    return (unl - ret) / ret * 100


def test_privleak_is_muses_formula():
    assert stats.privleak(0.6, 0.5) == pytest.approx(20.0)
    assert stats.privleak(0.5, 0.5) == 0.0
    assert np.isnan(stats.privleak(0.5, 0.0)) and np.isnan(stats.privleak(np.nan, 0.5))
    rng = np.random.default_rng(1)
    # our member score is the mean of the lowest-k log-probs = -Min-40%; MUSE's input is Min-40% itself
    forget_unl, holdout_unl = rng.normal(-1.0, 1, 30), rng.normal(-2.0, 1, 40)   # under-unlearned
    forget_ret, holdout_ret = rng.normal(-2.0, 1, 30), rng.normal(-2.0, 1, 40)
    muse = _muse_privleak_independently(-forget_unl, -holdout_unl, (-forget_ret, -holdout_ret))
    unl, ret = stats.muse_auc(forget_unl, holdout_unl), stats.muse_auc(forget_ret, holdout_ret)
    assert stats.privleak(unl, ret) == pytest.approx(muse, abs=1e-6)
    assert muse < -20   # under-unlearned is NEGATIVE, as in MUSE's tables
    assert stats.muse_privleak(stats.roc_auc(forget_unl, holdout_unl), stats.roc_auc(forget_ret, holdout_ret)) == \
        pytest.approx(muse, abs=1e-6)
    # ties (a quantized model scores many texts alike) count 1/2, as sklearn's trapezoids do
    tied_f, tied_h = np.round(forget_unl), np.round(holdout_unl)
    assert stats.muse_auc(tied_f, tied_h) == pytest.approx(
        (_muse_privleak_independently(-tied_f, -tied_h) / 100 + 1) * 0.5, abs=1e-9)


def test_ratio_of_means():
    assert stats.ratio_of_means([1.0, 3.0], [2.0, 2.0]) == 1.0
    assert np.isnan(stats.ratio_of_means([1.0], [0.0]))
    assert np.isnan(stats.ratio_of_means([], [1.0]))


def test_bootstrap_is_deterministic_and_covers_the_estimate():
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, 200)
    mean = lambda i: x[i].mean()  # noqa: E731
    first = stats.bootstrap_ci(mean, (x.size,), seed=7, n_resamples=500)
    assert first == stats.bootstrap_ci(mean, (x.size,), seed=7, n_resamples=500)
    assert first != stats.bootstrap_ci(mean, (x.size,), seed=8, n_resamples=500)
    low, high = first
    assert low < x.mean() < high
    assert 0.2 < high - low < 0.35          # ~ 2 * 1.96 / sqrt(200) = 0.277
    assert stats.bootstrap_ci(mean, x.size, seed=7, n_resamples=500) == first   # an int size works too


def test_bootstrap_matches_scipy_percentile_interval():
    rng = np.random.default_rng(4)
    x = rng.exponential(1.0, 80)
    ours = stats.bootstrap_ci(lambda i: x[i].mean(), (x.size,), seed=5, n_resamples=400, confidence=0.9)
    ref = bootstrap((np.arange(x.size),), lambda i: x[i].mean(), n_resamples=400, vectorized=False,
                    confidence_level=0.9, method="percentile", rng=np.random.default_rng(5))
    assert ours == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))


def test_bootstrap_paired_and_stratified_groups():
    rng = np.random.default_rng(5)
    base = rng.uniform(0.5, 1.0, 60)
    unlearned = base * 0.3 + rng.normal(0, 0.02, 60)
    low, high = stats.bootstrap_ci(lambda i: stats.ratio_of_means(unlearned[i], base[i]), (60,), seed=0)
    assert low < stats.ratio_of_means(unlearned, base) < high and high - low < 0.05   # pairing keeps it tight

    member, nonmember = rng.normal(1, 1, 30), rng.normal(0, 1, 45)
    seen = set()

    def auc(i, j):
        seen.add((len(i), len(j), int(i.max()) < 30, int(j.max()) < 45))
        return stats.fast_auc(member[i], nonmember[j])

    low, high = stats.bootstrap_ci(auc, (30, 45), seed=0, n_resamples=300)
    assert seen == {(30, 45, True, True)}   # each group resampled within itself, at its own size
    assert low < stats.roc_auc(member, nonmember) < high and 0 <= low and high <= 1
    assert (low, high) == stats.auc_ci(member, nonmember, seed=0, n_resamples=300)


def test_bootstrap_degenerate_and_nan():
    same = np.full(20, 0.7)
    assert stats.bootstrap_ci(lambda i: same[i].mean(), (20,), seed=0) == pytest.approx((0.7, 0.7))
    assert stats.bootstrap_ci(lambda i, j: stats.fast_auc(same[i], same[j]), (20, 20), seed=0) == (0.5, 0.5)
    # a ratio whose denominator is 0 in some resamples: those are left out, no crash, no warning
    den = np.zeros(10)
    den[0] = 1.0
    num = np.ones(10)
    low, high = stats.bootstrap_ci(lambda i: stats.ratio_of_means(num[i], den[i]), (10,), seed=0)
    assert np.isfinite(low) and np.isfinite(high) and low <= high
    # a statistic that divides by zero with numpy (warning) or is always NaN
    zero = np.zeros(10)
    assert all(np.isnan(stats.bootstrap_ci(lambda i: num[i].mean() / zero[i].mean() * 0, (10,), seed=0)))
    assert stats.bootstrap_ci(lambda i: float(i[0]), (1,), seed=0) == (0.0, 0.0)
    with pytest.raises(ValueError):
        stats.bootstrap_ci(lambda i: 0.0, (0,), seed=0)


def test_bootstrap_is_fast_enough_for_an_audit():
    rng = np.random.default_rng(6)
    member, nonmember = rng.normal(1, 1, 200), rng.normal(0, 1, 200)
    start = time.perf_counter()
    stats.bootstrap_ci(lambda i, j: stats.privleak(stats.fast_auc(member[i], nonmember[j]), 0.5), (200, 200),
                       seed=0, n_resamples=1000)
    assert time.perf_counter() - start < 3.0   # ~80 of these per audit
