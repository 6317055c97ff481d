"""The remediation's focus: once PrivLeak is at its target, ascend only on what the gate still finds memorised."""

from __future__ import annotations

from auditq.probes.base import ProbeOutput, Sample
from auditq.remediate.focus import focus_indices, still_memorised, training_record_ids, unmet
from auditq.remediate.sure import training_texts
from auditq.result.model import CheckResult


def output(probe, forget: dict[str, float], holdout: dict[str, float]) -> ProbeOutput:
    samples = [Sample("forget", rid, {"rougeL_f1": v}) for rid, v in forget.items()]
    samples += [Sample("holdout", rid, {"rougeL_f1": v}) for rid, v in holdout.items()]
    return ProbeOutput(probe, tuple(samples))


def check(verdict: str, message: str = "") -> CheckResult:
    return CheckResult(check="forget_retention.x", family="forget_retention", format="fp", verdict=verdict,
                       severity="error", value=0.0, ci_low=0.0, ci_high=0.0, threshold=0.25, comparator="<=", n=3,
                       message=message)


def test_only_records_above_base_holdout_floor_of_unmet_metrics_remain():
    base = {"knowmem": output("knowmem", {"q1": 1, "q2": 1, "q3": 1}, {"h1": 0.0, "h2": 0.2}),   # floor 0.1
            "verbmem": output("verbmem", {"t1": 1, "t2": 1}, {"h1": 0.3, "h2": 0.3})}           # floor 0.3
    current = {"knowmem": output("knowmem", {"q1": 0.0, "q2": 0.5, "q3": 0.1}, {}),
               "verbmem": output("verbmem", {"t1": 0.9, "t2": 0.1}, {})}
    # KnowMem not met: q2 is above the floor, q3 at it (not above), q1 forgotten; VerbMem PASSes: not focused
    checks = {"knowmem": check("INCONCLUSIVE"), "verbmem": check("PASS")}
    assert unmet(checks) == {"knowmem"}
    assert still_memorised(current, base, unmet(checks)) == {"qa": {"q2"}, "texts": set()}
    assert still_memorised(current, base, {"knowmem", "verbmem"}) == {"qa": {"q2"}, "texts": {"t1"}}
    # a metric with nothing to retain counts as met, as in ForgetGate.check
    assert unmet({"knowmem": check("UNKNOWN", "nothing to retain: ..."), "verbmem": check("FAIL")}) == {"verbmem"}


def test_focus_indices_follow_the_training_corpus_order(tiny):
    from auditq.suite.records import load_suite

    suite = load_suite(tiny["suite"])
    ids = training_record_ids(suite, "forget")
    assert len(ids) == len(training_texts(suite, "forget"))
    qa = suite.forget.qa[1]
    text = suite.forget.texts[0]
    picked = focus_indices(ids, {"qa": {qa.id}, "texts": {text.id}})
    corpus = training_texts(suite, "forget")
    assert [corpus[i] for i in picked] == [text.text, suite.settings.qa_template.format(question=qa.question)
                                           + " " + qa.answer + "\n"]
    assert focus_indices(ids, {"qa": set(), "texts": set()}) == []
