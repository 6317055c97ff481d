"""Verdict rules: interval wholly passing → PASS, wholly failing → FAIL, straddling or small n → INCONCLUSIVE."""

from dataclasses import replace

import numpy as np
import pytest

from auditq.verdict.config import AuditConfig, CheckPolicy
from auditq.verdict.policy import CheckEvaluator, FormatSamples, decide
from auditq.verdict.scoring import RoleSamples

LE = CheckPolicy(0.25, "error", "<=")
GE = CheckPolicy(0.5, "warn", ">=")
ABS = CheckPolicy(20, "error", "abs<=")


@pytest.mark.parametrize("value, low, high, n, policy, verdict", [
    (0.1, 0.05, 0.2, 30, LE, "PASS"),
    (0.5, 0.3, 0.7, 30, LE, "FAIL"),
    (0.2, 0.1, 0.3, 30, LE, "INCONCLUSIVE"),
    (0.1, 0.05, 0.2, 19, LE, "INCONCLUSIVE"),
    (0.8, 0.6, 0.9, 30, GE, "PASS"),
    (0.2, 0.1, 0.3, 30, GE, "FAIL"),
    (5.0, -10, 15, 30, ABS, "PASS"),
    (-30, -40, -25, 30, ABS, "FAIL"),
    (18, 10, 26, 30, ABS, "INCONCLUSIVE"),
    (float("nan"), None, None, 30, LE, "UNKNOWN"),
    (None, None, None, 30, LE, "UNKNOWN"),
])
def test_decide(value, low, high, n, policy, verdict):
    assert decide(value, low, high, n, policy, 20)[0] == verdict


def role(verbmem, knowmem, retain, members, nonmembers, verbmem_holdout=None, knowmem_holdout=None):
    """Per-sample arrays of one model; holdout scores default to 0 (a model that says nothing right about unseen records)."""
    arr = lambda x: np.asarray(x, dtype=float)  # noqa: E731
    n = len(verbmem)
    return RoleSamples(arr(verbmem), arr(knowmem), arr(retain), {"mink": arr(members)}, {"mink": arr(nonmembers)},
                       None, None,
                       verbmem_holdout=arr(np.zeros(n) if verbmem_holdout is None else verbmem_holdout),
                       knowmem_holdout=arr(np.zeros(n) if knowmem_holdout is None else knowmem_holdout))


def test_planted_recovery_is_caught():
    rng = np.random.default_rng(0)
    n = 40
    base = role(np.ones(n), np.ones(n), np.ones(n), rng.normal(1, 0.1, n), rng.normal(0, 0.1, n))
    forgot = role(np.zeros(n), rng.uniform(0, 0.1, n), np.full(n, 0.9), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n))
    fp = FormatSamples(base, forgot, None)
    q4 = FormatSamples(base, base, None)  # quantized unlearned model behaves exactly like the base
    evaluator = CheckEvaluator(AuditConfig(), seed=0)
    fp_checks = {c.check: c for c in evaluator.evaluate("fp", fp, None, True)}
    assert fp_checks["forget_retention.verbmem"].verdict == "PASS"
    assert fp_checks["forget_retention.knowmem"].verdict == "PASS"
    assert fp_checks["utility"].verdict == "PASS"
    assert "recovery.verbmem" not in fp_checks
    q4_checks = {c.check: c for c in evaluator.evaluate("rtn4", q4, fp, False)}
    assert q4_checks["recovery.verbmem"].verdict == "FAIL"
    assert q4_checks["recovery.verbmem"].value == pytest.approx(1.0)
    assert q4_checks["forget_retention.knowmem"].verdict == "FAIL"
    # MUSE's sign: a quantized model that recognises the forget set again is strongly NEGATIVE
    assert q4_checks["privleak"].verdict == "FAIL" and q4_checks["privleak"].value < -20


def test_retrain_bar_and_unknown_when_base_never_knew():
    n = 30
    base = role(np.ones(n), np.ones(n), np.ones(n), np.ones(n), np.zeros(n))
    unl = role(np.full(n, 0.5), np.full(n, 0.5), np.ones(n), np.ones(n), np.zeros(n))
    retrain = role(np.full(n, 0.48), np.full(n, 0.48), np.ones(n), np.ones(n), np.zeros(n))
    checks = {c.check: c for c in CheckEvaluator(AuditConfig(), 0).evaluate("fp", FormatSamples(base, unl, retrain), None, True)}
    # retention 0.5 would fail the plain 0.25 bar, but the retrain model keeps 0.48 (+0.05 margin)
    assert checks["forget_retention.verbmem"].verdict == "PASS"
    assert checks["forget_retention.verbmem"].threshold == pytest.approx(0.53)
    ignorant = role(np.zeros(n), np.zeros(n), np.ones(n), np.ones(n), np.zeros(n))
    checks = {c.check: c for c in CheckEvaluator(AuditConfig(), 0).evaluate("fp", FormatSamples(ignorant, unl, None), None, True)}
    assert checks["forget_retention.verbmem"].verdict == "UNKNOWN"


def test_model_that_never_saw_the_forget_set_passes_on_templated_data():
    """Finding 1: every record of a template shares its fixed phrases, so ROUGE-L against ANY record is ~0.3.
    A model trained without the forget set scores that on forget AND holdout records; base scores ~1 on forget.
    The raw ratio (old rule) calls it 0.3 > 0.25, FAIL; the floored retention calls it ~0, PASS."""
    rng = np.random.default_rng(3)
    n = 40
    chance = lambda: np.clip(rng.normal(0.3, 0.05, n), 0, 1)  # noqa: E731
    base = role(np.clip(rng.normal(0.97, 0.02, n), 0, 1), np.ones(n), np.ones(n), rng.normal(1, .1, n),
                rng.normal(0, .1, n), verbmem_holdout=chance(), knowmem_holdout=chance())
    never_saw = role(chance(), chance(), np.ones(n), rng.normal(0, .1, n), rng.normal(0, .1, n),
                     verbmem_holdout=chance(), knowmem_holdout=chance())
    samples = FormatSamples(base, never_saw, None)
    floor = {c.check: c for c in CheckEvaluator(AuditConfig(), 0).evaluate("fp", samples, None, True)}
    ratio = {c.check: c for c in CheckEvaluator(replace(AuditConfig(), retention="ratio"), 0).evaluate(
        "fp", samples, None, True)}
    for metric in ("verbmem", "knowmem"):
        check = floor[f"forget_retention.{metric}"]
        assert check.verdict == "PASS", check
        assert abs(check.value) < 0.1 and check.extras["raw_ratio"] > 0.25
        assert check.extras["floor"] == pytest.approx(getattr(base, f"{metric}_holdout").mean())
        assert check.extras["unlearned_holdout"] == pytest.approx(getattr(never_saw, f"{metric}_holdout").mean())
        assert ratio[f"forget_retention.{metric}"].verdict == "FAIL"   # what the old rule said
    # the definition, by hand: (U_forget - B_holdout) / (B_forget - B_holdout)
    u = never_saw.verbmem_forget.mean()
    b, fb = base.verbmem_forget.mean(), base.verbmem_holdout.mean()
    assert floor["forget_retention.verbmem"].value == pytest.approx((u - fb) / (b - fb))
    # ...and a model that kept everything is still 1 on the same scale, and FAILs
    kept = {c.check: c for c in CheckEvaluator(AuditConfig(), 0).evaluate("fp", FormatSamples(base, base, None),
                                                                            None, True)}
    assert kept["forget_retention.verbmem"].value == pytest.approx(1.0)
    assert kept["forget_retention.verbmem"].verdict == "FAIL"


def test_floored_retention_interval_resamples_forget_and_holdout():
    rng = np.random.default_rng(4)
    n = 30
    base = role(np.ones(n), np.ones(n), np.ones(n), np.ones(n), np.zeros(n),
                verbmem_holdout=rng.uniform(0, 0.6, n), knowmem_holdout=np.zeros(n))
    unl = role(np.full(n, 0.3), np.zeros(n), np.ones(n), np.ones(n), np.zeros(n))
    check = CheckEvaluator(AuditConfig(), 0).forget_retention("fp", FormatSamples(base, unl, None), "verbmem")
    # the forget side is constant: all of the width comes from resampling the holdout floor
    assert check.ci_low < check.value < check.ci_high
    assert check.n == n and check.extras["n_holdout"] == n


def test_base_not_above_its_floor_is_unknown_not_a_verdict():
    n = 30
    base = role(np.full(n, 0.3), np.ones(n), np.ones(n), np.ones(n), np.zeros(n), verbmem_holdout=np.full(n, 0.3))
    unl = role(np.full(n, 0.3), np.zeros(n), np.ones(n), np.ones(n), np.zeros(n))
    check = CheckEvaluator(AuditConfig(), 0).forget_retention("fp", FormatSamples(base, unl, None), "verbmem")
    assert check.verdict == "UNKNOWN" and "floor" in check.message
    no_holdout = RoleSamples(*[getattr(base, f) for f in ("verbmem_forget", "knowmem_forget", "knowmem_retain",
                                                          "members", "nonmembers", "retain_nll", "retain_tokens")])
    check = CheckEvaluator(AuditConfig(), 0).forget_retention("fp", FormatSamples(no_holdout, unl, None), "verbmem")
    assert check.verdict == "UNKNOWN" and "holdout" in check.message


def test_privleak_check_equals_muses_formula_computed_independently():
    """MUSE: roc_curve(y, -Min-40%) with forget 0 / holdout 1, auc(); (AUC_unl - AUC_retrain) / AUC_retrain * 100;
    AUC_retrain = 0.5 without a retrain model."""
    from test_stats import _muse_privleak_independently

    rng = np.random.default_rng(5)
    n = 120
    base = role(np.ones(n), np.ones(n), np.ones(n), rng.normal(1, 1, n), rng.normal(0, 1, n))
    unl = role(np.zeros(n), np.zeros(n), np.ones(n), rng.normal(0.3, 1, n), rng.normal(0, 1, 110))
    ret = role(np.zeros(n), np.zeros(n), np.ones(n), rng.normal(0.05, 1, n), rng.normal(0, 1, 110))
    evaluator = CheckEvaluator(AuditConfig(), 0)
    members, nonmembers = unl.members["mink"], unl.nonmembers["mink"]
    alone = evaluator.privleak("fp", FormatSamples(base, unl, None))
    assert alone.value == pytest.approx(_muse_privleak_independently(-members, -nonmembers), abs=1e-6)
    against = evaluator.privleak("fp", FormatSamples(base, unl, ret))
    assert against.value == pytest.approx(_muse_privleak_independently(
        -members, -nonmembers, (-ret.members["mink"], -ret.nonmembers["mink"])), abs=1e-6)
    assert alone.value < 0 and alone.ci_low <= alone.value <= alone.ci_high  # forget still separable: negative
    assert "negative = under-unlearned" in alone.message


@pytest.mark.parametrize("reference", [0.4772, 0.5393, 0.3])
def test_privleak_with_a_published_reference_auc_is_muses_formula_against_it(reference):
    """--privleak-reference-auc X: PrivLeak = (AUC_unl - X) / X * 100, AUC_unl computed independently (MUSE's
    roc_curve + auc), and the report says which reference was used; without it the reference is 0.5."""
    from sklearn.metrics import auc, roc_curve

    rng = np.random.default_rng(11)
    n = 60
    base = role(np.ones(n), np.ones(n), np.ones(n), rng.normal(1, 1, n), rng.normal(0, 1, n))
    unl = role(np.zeros(n), np.zeros(n), np.ones(n), rng.normal(0.4, 1, n), rng.normal(0, 1, 50))
    forget_min40, holdout_min40 = -unl.members["mink"], -unl.nonmembers["mink"]
    y = np.concatenate([np.zeros(n), np.ones(50)])
    fpr, tpr, _ = roc_curve(y, -np.concatenate([forget_min40, holdout_min40]))
    auc_unl = auc(fpr, tpr)
    check = CheckEvaluator(AuditConfig(privleak_reference_auc=reference), 0).privleak(
        "fp", FormatSamples(base, unl, None))
    assert check.value == pytest.approx((auc_unl - reference) / reference * 100, abs=1e-6)
    assert check.extras["reference_auc_muse"] == reference
    assert f"reference AUC {reference:g} (--privleak-reference-auc" in check.message
    default = CheckEvaluator(AuditConfig(), 0).privleak("fp", FormatSamples(base, unl, None))
    assert default.value == pytest.approx((auc_unl - 0.5) / 0.5 * 100, abs=1e-6) != check.value
    assert "reference AUC 0.5 (no --retrain" in default.message
    assert AuditConfig(privleak_reference_auc=reference).as_dict()["privleak_reference_auc"] == reference


def test_muse_reference_aucs_are_muses_published_values():
    """swj0419/muse_bench constants.py AUC_RETRAIN[...]['forget_holdout_Min-40%'] (0.47719999999999996, 0.5392999999999999)."""
    from auditq.verdict.config import MUSE_REFERENCE_AUC

    assert MUSE_REFERENCE_AUC == {"news": pytest.approx(0.47719999999999996, abs=1e-12),
                                  "books": pytest.approx(0.5392999999999999, abs=1e-12)}


def test_recovery_allows_the_retrain_models_own_quantization_noise():
    """With --retrain, what quantization does to a model that never saw the forget set is allowed on top."""
    n = 40
    base = role(np.ones(n), np.ones(n), np.ones(n), np.ones(n), np.zeros(n), verbmem_holdout=np.full(n, 0.2))
    fp_unl = role(np.full(n, 0.2), np.zeros(n), np.ones(n), np.ones(n), np.zeros(n), verbmem_holdout=np.full(n, 0.2))
    q_unl = role(np.full(n, 0.3), np.zeros(n), np.ones(n), np.ones(n), np.zeros(n), verbmem_holdout=np.full(n, 0.2))
    fp = FormatSamples(base, fp_unl, fp_unl)
    q4 = FormatSamples(base, q_unl, q_unl)        # the retrain model moves by the same 0.125 here
    check = CheckEvaluator(AuditConfig(), 0).recovery("rtn4", q4, fp, "verbmem")
    assert check.value == pytest.approx(0.125) and check.verdict == "PASS"
    assert check.threshold == pytest.approx(0.225) and check.extras["retrain_recovery"] == pytest.approx(0.125)
    alone = CheckEvaluator(AuditConfig(), 0).recovery("rtn4", FormatSamples(base, q_unl, None),
                                                      FormatSamples(base, fp_unl, None), "verbmem")
    assert alone.verdict == "FAIL" and alone.threshold == pytest.approx(0.10)


def _mcq_role(forget_acc, retain_acc, n_choices=4):
    """A model with only MCQ measured: per-question accuracy (0/1) on forget and retain questions."""
    arr = lambda x: np.asarray(x, dtype=float)  # noqa: E731
    forget_acc, retain_acc = arr(forget_acc), arr(retain_acc)
    return RoleSamples(None, None, None, {}, {}, None, None, mcq_forget=forget_acc,
                       mcq_holdout=np.full(forget_acc.size, 1 / n_choices), mcq_retain=retain_acc,
                       mcq_retain_chance=np.full(retain_acc.size, 1 / n_choices))


def test_mcq_checks_are_accuracy_above_chance_relative_to_base():
    """(acc_U - 1/k) / (acc_B - 1/k): at chance = 0 (PASS), as good as base = 1 (FAIL); recovery caught at rtn4;
    asked only when --probes names mcq."""
    n = 100
    chance_level = np.resize([1.0, 0.0, 0.0, 0.0], n)  # 25 % right on 4 choices
    base = _mcq_role(np.ones(n), np.ones(n))
    forgot = _mcq_role(chance_level, np.ones(n))
    evaluator = CheckEvaluator(AuditConfig(), seed=0, requested=["mcq"])
    fp = FormatSamples(base, forgot, None)
    fp_checks = {c.check: c for c in evaluator.evaluate("fp", fp, None, True)}
    assert fp_checks["forget_retention.mcq"].value == pytest.approx(0.0)
    assert fp_checks["forget_retention.mcq"].verdict == "PASS"
    assert fp_checks["utility.mcq"].verdict == "PASS" and fp_checks["utility.mcq"].value == pytest.approx(1.0)
    assert fp_checks["forget_retention.verbmem"].verdict == "NOT_REQUESTED"
    q4 = FormatSamples(base, base, None)  # the quantized unlearned model answers like base: recovered
    q4_checks = {c.check: c for c in evaluator.evaluate("rtn4", q4, fp, False)}
    assert q4_checks["forget_retention.mcq"].verdict == "FAIL" and q4_checks["forget_retention.mcq"].value == 1.0
    assert q4_checks["recovery.mcq"].verdict == "FAIL" and q4_checks["recovery.mcq"].value == pytest.approx(1.0)
    half = _mcq_role(np.resize([1.0, 0.0], n), np.ones(n))  # 50 %: (0.5-0.25)/0.75
    value = {c.check: c for c in evaluator.evaluate("fp", FormatSamples(base, half, None), None, True)}
    assert value["forget_retention.mcq"].value == pytest.approx(1 / 3)
    lost_retain = _mcq_role(chance_level, chance_level)
    util = {c.check: c for c in evaluator.evaluate("fp", FormatSamples(base, lost_retain, None), None, True)}
    assert util["utility.mcq"].verdict == "FAIL"
    default = {c.check for c in CheckEvaluator(AuditConfig(), 0, requested=["verbmem"]).evaluate("fp", fp, None, True)}
    assert not any("mcq" in c for c in default)  # no mcq rows unless asked


def test_mcq_is_unknown_when_base_is_at_chance():
    n = 40
    at_chance = _mcq_role(np.resize([1.0, 0.0, 0.0, 0.0], n), np.resize([1.0, 0.0, 0.0, 0.0], n))
    checks = {c.check: c for c in CheckEvaluator(AuditConfig(), 0, requested=["mcq"]).evaluate(
        "fp", FormatSamples(at_chance, at_chance, None), None, True)}
    assert checks["forget_retention.mcq"].verdict == "UNKNOWN"
    assert checks["utility.mcq"].verdict == "UNKNOWN" and "not above chance" in checks["utility.mcq"].message
