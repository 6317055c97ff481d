"""Verdict rules: interval wholly passing → PASS, wholly failing → FAIL, straddling or small n → INCONCLUSIVE."""

import numpy as np
import pytest

from auditq.config import AuditConfig, CheckPolicy
from auditq.policy import CheckEvaluator, FormatSamples, decide
from auditq.scoring import RoleSamples

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


def role(verbmem, knowmem, retain, members, nonmembers):
    arr = lambda x: np.asarray(x, dtype=float)  # noqa: E731
    return RoleSamples(arr(verbmem), arr(knowmem), arr(retain), {"mink": arr(members)}, {"mink": arr(nonmembers)},
                       None, None)


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
    assert q4_checks["privleak"].verdict == "FAIL" and q4_checks["privleak"].value > 20


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
