"""TOFU checks over the `tofu` probe's per-sample arrays (auditq.probes.tofu), one format at a time.

tofu.forget_quality   TOFU's forget quality: KS-test p-value of the audited model's forget truth ratios
                      against the retrain model's at the SAME format (open-unlearning `ks_test`). Needs
                      --retrain (UNKNOWN without it). PASS when p >= threshold (0.05): the test did not
                      tell the two apart, which with few records is weak evidence (docs/tofu.md).
tofu.probability      forget answer probability retained: mean prob unlearned / mean prob base at the
                      same precision; with --retrain the bar is the retrain model's own ratio + margin.
tofu.model_utility    TOFU's model utility (harmonic mean of retain prob, retain ROUGE-L recall and
                      retain truth ratio, true_better) unlearned / base at the same precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditq.probes import tofu_metrics as tm
from auditq.result.model import CheckResult
from auditq.verdict.stats import ratio_of_means

#: `ev` below is the calling auditq.verdict.policy.CheckEvaluator and `cur` its FormatSamples; not imported
#: here (policy imports this module; tests/architecture forbids the cycle, even under TYPE_CHECKING)
Evaluator = Any
Samples = Any

#: (check, family) of every TOFU check, in report order
TOFU_CHECKS = (("tofu.forget_quality", "forget_quality"), ("tofu.probability", "tofu_probability"),
               ("tofu.model_utility", "model_utility"))


def _arr(samples, key: str) -> np.ndarray | None:
    table = getattr(samples, "tofu", None) if samples is not None else None
    values = None if not table else table.get(key)
    return values if values is not None and values.size else None


def has_tofu(cur: Samples) -> bool:
    return any(_arr(s, "forget.prob") is not None for s in (cur.base, cur.unlearned, cur.retrain))


def utility_of(samples, idx=None) -> float:
    """TOFU model utility over the retain records `idx` (all when None)."""
    pick = (lambda a: a) if idx is None else (lambda a: a[idx])  # noqa: E731
    prob, rouge = pick(_arr(samples, "retain.prob")), pick(_arr(samples, "retain.rougeL_recall"))
    ratios = pick(_arr(samples, "retain.truth_ratio"))
    return tm.model_utility([prob.mean(), rouge.mean(), tm.true_better(ratios)])


def forget_quality(ev: Evaluator, fmt: str, cur: Samples) -> CheckResult:
    check, family = TOFU_CHECKS[0]
    unl, ret = _arr(cur.unlearned, "forget.truth_ratio"), _arr(cur.retrain, "forget.truth_ratio")
    if unl is None:
        return ev._unknown(check, family, fmt, "the tofu probe did not measure the unlearned model")
    if ret is None:
        return ev._unknown(check, family, fmt, "forget quality compares with the retain model: pass --retrain "
                                               "(TOFU's KS test needs the retrain model's truth ratios)")
    from scipy.stats import ks_2samp

    test = ks_2samp(unl, ret)
    value = tm.forget_quality(unl, ret)
    detail = (f"KS p-value of {unl.size} forget truth ratios vs the retrain model's {ret.size} at this format "
              f"(D = {test.statistic:.3f}); truth ratio closer_to_1 {tm.closer_to_1_better(unl):.3f} vs retrain "
              f"{tm.closer_to_1_better(ret):.3f}")
    return ev._result(check, family, fmt, value, None, int(min(unl.size, ret.size)), detail,
                      extras={"ks_statistic": float(test.statistic), "log10_p": float(np.log10(max(value, 1e-300))),
                              "truth_ratio_unlearned": tm.closer_to_1_better(unl),
                              "truth_ratio_retrain": tm.closer_to_1_better(ret)})


def probability(ev: Evaluator, fmt: str, cur: Samples) -> CheckResult:
    check, family = TOFU_CHECKS[1]
    unl, base = _arr(cur.unlearned, "forget.prob"), _arr(cur.base, "forget.prob")
    if unl is None or base is None or unl.size != base.size:
        return ev._unknown(check, family, fmt, "the tofu probe did not measure both models on the same records")
    value = ratio_of_means(unl, base)
    detail = f"unlearned/base forget answer probability = {unl.mean():.3f}/{base.mean():.3f}"
    extras = {"unlearned_forget": float(unl.mean()), "base_forget": float(base.mean())}
    ret = _arr(cur.retrain, "forget.prob")
    if ret is None or ret.size != base.size:
        return ev._result(check, family, fmt, value, ev._interval(lambda i: ratio_of_means(unl[i], base[i]),
                                                                  (unl.size,)), int(unl.size), detail, extras=extras)
    # a model that never saw the answers still gives them some probability: its own ratio is the fair bar
    ret_value = ratio_of_means(ret, base)
    low, high = ev._interval(lambda i: ratio_of_means(unl[i], base[i]) - ratio_of_means(ret[i], base[i]), (unl.size,))
    margin = ev.config.retrain_margin
    detail += f"; retrain ratio {ret_value:.3f} + margin {margin:.2f}"
    extras["retrain_ratio"] = ret_value
    return ev._result(check, family, fmt, value, (low + ret_value, high + ret_value), int(unl.size), detail,
                      threshold=ret_value + margin, extras=extras)


def model_utility(ev: Evaluator, fmt: str, cur: Samples) -> CheckResult:
    check, family = TOFU_CHECKS[2]
    if _arr(cur.unlearned, "retain.prob") is None or _arr(cur.base, "retain.prob") is None:
        return ev._unknown(check, family, fmt, "the tofu probe did not measure both models on retain QA")
    unl, base = utility_of(cur.unlearned), utility_of(cur.base)
    if not base > 0:
        return ev._unknown(check, family, fmt, "the base model's TOFU model utility is 0 here")
    n = int(_arr(cur.unlearned, "retain.prob").size)
    stat = lambda i: utility_of(cur.unlearned, i) / max(utility_of(cur.base, i), 1e-12)  # noqa: E731
    detail = (f"unlearned/base TOFU model utility = {unl:.3f}/{base:.3f} (harmonic mean of retain prob, "
              "ROUGE-L recall, truth ratio; no real-authors / world-facts sets)")
    return ev._result(check, family, fmt, unl / base, ev._interval(stat, (n,)), n, detail,
                      extras={"model_utility_unlearned": unl, "model_utility_base": base})


def tofu_checks(ev: Evaluator, fmt: str, cur: Samples) -> list[CheckResult]:
    return [forget_quality(ev, fmt, cur), probability(ev, fmt, cur), model_utility(ev, fmt, cur)]
