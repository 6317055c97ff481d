"""GGUF rows on the demo pair, measured by llama.cpp itself (slow: quantizes and scores 3 models × 4 formats).

What this pins, with the numbers measured when it was written (fragile model, --retrain):
- every gguf row has base, unlearned and retrain results, verdicts and the tensor types llama.cpp produced;
  on this hidden-128 model gguf:q4_k_m holds no Q4_K tensor at all (K-quant fallback to Q5_0/Q8_0) and says so;
- the planted failure is built on RTN's per-output-channel int4 grid; Q4_0 quantizes blocks of 32 input
  columns on a different grid, so the forgotten answers do NOT come back (forget KnowMem stays 0.00) and
  VerbMem recovery stays small (0.09), but the membership signal partly returns: Min-K% AUC 0.66 at fp →
  0.83 at Q4_0 (PrivLeak +7 → +34). rtn4 on the same model gives everything back (recovery 0.89 / 1.00).
"""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from auditq.audit.pipeline import run_audit  # noqa: E402
from auditq.audit.request import audit_request  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.gguf]


@pytest.fixture(scope="module")
def report(demo_models):
    request = audit_request(base=demo_models.base, unlearned=demo_models.fragile, retrain=demo_models.retrain,
                            suite=demo_models.suite, formats=("fp", "gguf:q8_0", "gguf:q4_k_m", "gguf:q4_0"))
    return run_audit(request).report


def row(report, name):
    return next(f for f in report.formats if f.format == name)


def test_gguf_rows_have_roles_verdicts_and_tensor_types(report):
    for name in ("gguf:q8_0", "gguf:q4_k_m", "gguf:q4_0"):
        fmt = row(report, name)
        assert fmt.error is None
        assert set(fmt.roles) == {"base", "unlearned", "retrain"}
        assert fmt.roles["base"].knowmem_forget >= 0.9  # the base model still memorises in every GGUF type
        assert {c.check for c in fmt.checks} >= {"forget_retention.knowmem", "recovery.knowmem", "privleak"}
        assert all(c.verdict in ("PASS", "FAIL", "INCONCLUSIVE") for c in fmt.checks)
        assert fmt.details["engine"] == "llama.cpp" and fmt.details["tensor_types"]
    assert row(report, "gguf:q8_0").details["tensor_types"].get("Q8_0") == 30
    assert row(report, "gguf:q4_0").details["tensor_types"].get("Q4_0") == 29
    q4km = row(report, "gguf:q4_k_m")
    assert "Q4_K" not in q4km.details["tensor_types"] and "not a multiple of 256" in q4km.details["note"]


def test_q4_0_brings_back_membership_signal_but_not_answers(report):
    fp, q4 = row(report, "fp"), row(report, "gguf:q4_0")
    assert q4.roles["unlearned"].mia["mink"].auc > fp.roles["unlearned"].mia["mink"].auc + 0.1
    recovery = {c.check: c for c in q4.checks}
    assert recovery["recovery.knowmem"].verdict == "PASS"
    assert recovery["recovery.verbmem"].value < 0.2
    assert q4.privleak < fp.privleak - 15  # MUSE's sign: the membership signal back = more negative
