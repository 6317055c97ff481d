"""RetainLikelihood: per-record NLL and the token-weighted corpus perplexity."""

from __future__ import annotations

import math

import pytest

from auditq.probes import PROBES
from auditq.probes.base import ProbeSettings
from auditq.probes.utility import RetainLikelihood, perplexity


def test_registered_name():
    assert PROBES.load("utility") is RetainLikelihood


def test_nll_per_record_and_token_weighted_corpus(tiny, make_suite):
    texts = (tiny.memorised[0], tiny.unseen[0], tiny.unseen[1] + " " + tiny.unseen[2])
    suite = make_suite(retain_texts=texts)
    out = RetainLikelihood().run(tiny.lm(), tiny.tokenizer, suite, ProbeSettings())
    scored = tiny.lm().score([tiny.tokenizer(text)["input_ids"] for text in texts])
    total_nll = total_tokens = 0.0
    for sample, ts in zip(out.samples, scored):
        logp = ts.logprobs
        assert sample.split == "retain"
        assert sample.scores["n_tokens"] == len(logp)
        assert sample.scores["nll"] == pytest.approx(-sum(logp) / len(logp), rel=1e-9)
        total_nll -= sum(logp)
        total_tokens += len(logp)
    assert out.info["mean_nll"] == pytest.approx(total_nll / total_tokens, rel=1e-9)
    # token-weighted, not the mean of per-record means (the records differ in length)
    per_record = sum(out.values("retain", "nll")) / 3
    assert abs(out.info["mean_nll"] - per_record) > 1e-6
    assert out.info["perplexity"] == pytest.approx(math.exp(total_nll / total_tokens))
    assert out.info["n_tokens"] == total_tokens
    nll = out.values("retain", "nll")
    assert nll[0] < 0.5 < nll[1]              # memorised text is far more likely
    assert RetainLikelihood().size(suite) == 3


def test_no_retain_text(tiny, make_suite):
    out = RetainLikelihood().run(tiny.lm(), tiny.tokenizer, make_suite(retain_qa=[("q", "a")]), ProbeSettings())
    assert out.samples == ()
    assert math.isnan(out.info["mean_nll"]) and math.isnan(out.info["perplexity"])


def test_perplexity_edges():
    assert perplexity(0.0) == 1.0
    assert perplexity(1000.0) == math.inf
    assert perplexity(math.inf) == math.inf
    assert math.isnan(perplexity(math.nan))
