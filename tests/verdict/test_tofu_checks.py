"""TOFU checks end to end on the prebuilt demo models (tiny real Llamas), in full precision.

The tofu probe runs through TorchCausalLM on BASE, the retrain model (never saw the forget set) and the
audited model, on the 100 forget and the first 25 retain QA records of probes/demo-tofu (KS needs the
forget records: at n = 25 BASE vs retrain gave p = 0.08); the checks are CheckEvaluator's.
Planted failure: BASE audited as if it were the unlearned model (it still knows every forget answer).
Good model: the retrain model (never saw the forget set). Against itself as the retain model its forget
quality is 1 by construction; its answer-probability retention is judged without --retrain (ratio to
BASE vs 0.25), which is not.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from auditq.probes.base import ProbeSettings
from auditq.probes.tofu import TofuMetrics
from auditq.result.model import FAIL, PASS, UNKNOWN
from auditq.suite.records import load_suite
from auditq.verdict.config import AuditConfig
from auditq.verdict.policy import CheckEvaluator, FormatSamples
from auditq.verdict.scoring import collect_samples

SUITE = Path(__file__).resolve().parents[2] / "probes" / "demo-tofu"
N_RETAIN = 25


def _run(path: Path, suite) -> object:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from auditq.backends.torch_lm import TorchCausalLM

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    lm = TorchCausalLM(model, tok.pad_token_id or 0, tok.eos_token_id, batch_size=64, max_batch_tokens=4096)
    out = TofuMetrics().run(lm, tok, suite, ProbeSettings(answer_tokens=12))
    return collect_samples({"tofu": out}, None)


@pytest.mark.slow
def test_planted_failure_fails_and_never_seen_model_passes(demo_models):
    full = load_suite(SUITE)
    suite = replace(full, retain=replace(full.retain, qa=full.retain.qa[:N_RETAIN]))
    base, retrain = _run(demo_models.base, suite), _run(demo_models.retrain, suite)
    ev = CheckEvaluator(AuditConfig(min_n=20, bootstrap_resamples=200), seed=0, requested=("tofu",))

    planted = {c.check: c for c in ev.evaluate("fp", FormatSamples(base, base, retrain), None, True)}
    good = {c.check: c for c in ev.evaluate("fp", FormatSamples(base, retrain, retrain), None, True)}
    no_retrain = {c.check: c for c in ev.evaluate("fp", FormatSamples(base, retrain, None), None, True)}

    # forget quality: BASE's forget truth ratios are told apart from the retrain model's
    assert planted["tofu.forget_quality"].verdict == FAIL, planted["tofu.forget_quality"]
    assert planted["tofu.forget_quality"].value < 0.05
    assert good["tofu.forget_quality"].verdict == PASS and good["tofu.forget_quality"].value == 1.0
    assert no_retrain["tofu.forget_quality"].verdict == UNKNOWN
    assert "--retrain" in no_retrain["tofu.forget_quality"].message
    # answer probability retained: BASE keeps all of it (ratio 1) against the retrain bar; the retrain
    # model keeps almost none of it (measured 0.003 of BASE's) against the plain 0.25 bar
    assert planted["tofu.probability"].verdict == FAIL, planted["tofu.probability"]
    assert no_retrain["tofu.probability"].verdict == PASS, no_retrain["tofu.probability"]
    assert no_retrain["tofu.probability"].value < 0.05
    # model utility is judged on retain QA, which both models know
    assert planted["tofu.model_utility"].verdict == PASS
    assert set(planted) >= {"tofu.forget_quality", "tofu.probability", "tofu.model_utility"}
