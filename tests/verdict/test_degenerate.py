"""auditq.verdict.degenerate: UNLEARNED with BASE's weight files is never PASS (issue 24 class 5)."""

from __future__ import annotations

import pytest

from auditq.result.model import FAIL, INCONCLUSIVE, NOT_REQUESTED, PASS, UNKNOWN, WAIVED, CheckResult
from auditq.verdict.degenerate import IDENTICAL, identical_weights, mark_identical, never_pass


def _check(verdict: str) -> CheckResult:
    return CheckResult("privleak", "privleak", "fp", verdict, "error", 1.0, 0.0, 2.0, 20.0, "abs<=", 30, "measured")


def test_identical_weights_compares_weight_files_only():
    base = {"model.safetensors": "aa", "config.json": "c1", "tokenizer.json": "t"}
    assert identical_weights(base, {"model.safetensors": "aa", "config.json": "c2"})  # config edits change nothing
    assert not identical_weights(base, {"model.safetensors": "ab", "config.json": "c1"})
    shards = {"model-00001.safetensors": "x", "model-00002.safetensors": "y"}
    assert identical_weights(shards, {"a.safetensors": "y", "b.safetensors": "x"})  # renamed shards, same bytes
    assert not identical_weights(shards, {"a.safetensors": "x"})
    assert not identical_weights({"config.json": "c"}, {"config.json": "c"})  # no weights: nothing to compare


@pytest.mark.parametrize("verdict, expected", [(PASS, INCONCLUSIVE), (FAIL, FAIL), (INCONCLUSIVE, INCONCLUSIVE),
                                               (UNKNOWN, UNKNOWN), (WAIVED, WAIVED)])
def test_marked_checks_are_never_pass_and_say_why(verdict, expected):
    marked = mark_identical(_check(verdict))
    assert marked.verdict == expected and marked.message.startswith(IDENTICAL)
    assert marked.extras["unlearned_identical_to_base"] is True


def test_not_requested_checks_are_left_alone():
    check = _check(NOT_REQUESTED)
    assert mark_identical(check) == check


@pytest.mark.parametrize("fail_on, allow, expected", [(None, False, (INCONCLUSIVE, 1)), ("inconclusive", False, (INCONCLUSIVE, 1)),
                                                      ("fail", False, (INCONCLUSIVE, 0)), (None, True, (INCONCLUSIVE, 0)),
                                                      ("never", False, (INCONCLUSIVE, 0))])
def test_an_all_waived_gate_is_inconclusive_not_pass(fail_on, allow, expected):
    assert never_pass(PASS, 0, fail_on, allow) == expected
    assert never_pass(FAIL, 1, fail_on, allow) == (FAIL, 1)


def test_retrain_identical_to_base_is_named_and_never_pass():
    from auditq.verdict.degenerate import RETRAIN_IDENTICAL

    marked = mark_identical(_check(PASS), RETRAIN_IDENTICAL, "retrain")
    assert marked.verdict == INCONCLUSIVE and marked.message.startswith("RETRAIN is identical to BASE")
    assert marked.extras["retrain_identical_to_base"] is True
