"""Membership-inference features, the score convention, and separation on a tiny model."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from auditq.backends.base import TokenScores
from auditq.probes import PROBES
from auditq.probes.base import ProbeOutput, ProbeSettings, Sample
from auditq.probes.mia import (
    ATTACKS,
    FEATURES,
    MembershipInference,
    lowest_k_count,
    membership_from_values,
    membership_scores,
    mia_features,
)
from auditq.verdict import stats


def _scores(logprobs, mean=None, std=None) -> TokenScores:
    logprobs = np.asarray(logprobs, dtype=np.float64)
    return TokenScores(logprobs=logprobs,
                       mean_logp=np.zeros_like(logprobs) if mean is None else np.asarray(mean, dtype=np.float64),
                       std_logp=np.ones_like(logprobs) if std is None else np.asarray(std, dtype=np.float64))


def test_registered_name_and_attacks():
    assert PROBES.load("mia") is MembershipInference
    assert ATTACKS == ("loss", "zlib", "mink", "minkpp", "ref")
    assert FEATURES == ("loss", "zlib", "mink", "minkpp", "n_tokens")


def test_lowest_k_count_never_zero():
    assert lowest_k_count(10, 0.4) == 4
    assert lowest_k_count(9, 0.4) == 3      # floor(3.6)
    assert lowest_k_count(2, 0.4) == 1      # floor(0.8) = 0 -> 1
    assert lowest_k_count(1, 0.4) == 1


def test_features_by_hand():
    text = "abc abc abc"
    ts = _scores([-1.0, -2.0, -3.0, -0.5], mean=[-1.0, -1.0, -2.0, -1.0], std=[0.5, 2.0, 0.0, 1.0])
    f = mia_features(ts, text, k=0.2)              # floor(4 * 0.2) = 0 -> the single lowest token
    assert f["loss"] == pytest.approx(1.625)
    assert f["zlib"] == pytest.approx(1.625 / len(zlib.compress(text.encode("utf-8"))))
    assert f["mink"] == -3.0
    # z = [(-1+1)/0.5, (-2+1)/2, (-3+2)/1e-6, (-0.5+1)/1] = [0, -0.5, -1e6, 0.5]
    assert f["minkpp"] == pytest.approx(-1e6)
    assert f["n_tokens"] == 4.0
    f = mia_features(ts, text, k=0.5)              # two lowest
    assert f["mink"] == -2.5
    assert f["minkpp"] == pytest.approx((-1e6 - 0.5) / 2)
    f = mia_features(ts, text, k=1.0)
    assert f["mink"] == pytest.approx(-1.625)
    assert f["minkpp"] == pytest.approx((0 - 0.5 - 1e6 + 0.5) / 4)
    with pytest.raises(ValueError):
        mia_features(_scores([]), text, 0.4)


def test_zlib_uses_utf8_bytes():
    text = "naïve café ümlaut"
    f = mia_features(_scores([-2.0]), text, 0.4)
    assert f["zlib"] == pytest.approx(2.0 / len(zlib.compress(text.encode("utf-8"))))


def test_features_match_hand_computation_from_the_model(tiny, make_suite):
    suite = make_suite(forget_texts=tiny.memorised, holdout_texts=tiny.unseen)
    k = 0.3
    out = MembershipInference().run(tiny.lm(), tiny.tokenizer, suite, ProbeSettings(mink_k=k))
    assert [s.split for s in out.samples] == ["forget"] * 3 + ["holdout"] * 4
    texts = tiny.memorised + tiny.unseen
    # score as the probe does (one padded batch), so float32 results are bit-comparable
    scored = tiny.lm().score([tiny.tokenizer(text)["input_ids"] for text in texts])
    for sample, text, ts in zip(out.samples, texts, scored):
        logp, n = ts.logprobs, ts.n_tokens
        assert n == len(tiny.tokenizer(text)["input_ids"]) - 1   # every token after BOS is predicted
        m = max(1, math.floor(n * k))
        loss = -sum(logp) / n
        z = [(lp - mu) / max(sd, 1e-6) for lp, mu, sd in zip(logp, ts.mean_logp, ts.std_logp)]
        assert sample.scores["n_tokens"] == n
        assert sample.scores["loss"] == pytest.approx(loss, rel=1e-9)
        assert sample.scores["zlib"] == pytest.approx(loss / len(zlib.compress(text.encode())), rel=1e-9)
        assert sample.scores["mink"] == pytest.approx(sum(sorted(logp)[:m]) / m, rel=1e-9)
        assert sample.scores["minkpp"] == pytest.approx(sum(sorted(z)[:m]) / m, rel=1e-9)
    assert out.info["n_forget"] == 3 and out.info["n_holdout"] == 4
    assert MembershipInference().size(suite) == 7


def test_memorised_texts_score_as_members(tiny, make_suite):
    suite = make_suite(forget_texts=tiny.memorised, holdout_texts=tiny.unseen)
    out = MembershipInference().run(tiny.lm(), tiny.tokenizer, suite, ProbeSettings())
    for attack in ("loss", "zlib", "mink", "minkpp"):
        member = membership_scores(out, "forget", attack)
        nonmember = membership_scores(out, "holdout", attack)
        assert member.min() > nonmember.max(), attack
        assert stats.roc_auc(member, nonmember) == 1.0
    # and the same convention, forget labelled 1, through scikit-learn directly
    mink = np.concatenate([out.values("forget", "mink"), out.values("holdout", "mink")])
    assert roc_auc_score([1] * 3 + [0] * 4, mink) == 1.0


def test_score_convention_higher_is_member():
    values = np.array([1.0, 2.0])
    assert list(membership_from_values("loss", values)) == [-1.0, -2.0]
    assert list(membership_from_values("zlib", values)) == [-1.0, -2.0]
    assert list(membership_from_values("mink", values)) == [1.0, 2.0]
    assert list(membership_from_values("minkpp", values)) == [1.0, 2.0]
    # target loss 1 vs reference 3: the target finds it much easier -> member-like, score +2
    assert list(membership_from_values("ref", values, np.array([3.0, 1.0]))) == [2.0, -1.0]
    with pytest.raises(ValueError):
        membership_from_values("ref", values)
    with pytest.raises(ValueError):
        membership_from_values("ref", values, np.array([1.0]))
    with pytest.raises(ValueError):
        membership_from_values("gradnorm", values)


def _output(split_losses) -> ProbeOutput:
    samples = tuple(Sample(split, rid, {"loss": loss, "zlib": 0.0, "mink": 0.0, "minkpp": 0.0, "n_tokens": 1.0})
                    for split, rid, loss in split_losses)
    return ProbeOutput("mia", samples)


def test_reference_attack_matches_by_record_id():
    target = _output([("forget", "a", 1.0), ("forget", "b", 2.0), ("holdout", "c", 3.0)])
    reference = _output([("holdout", "c", 3.5), ("forget", "b", 2.5), ("forget", "a", 4.0)])
    assert list(membership_scores(target, "forget", "ref", reference=reference)) == [3.0, 0.5]
    assert list(membership_scores(target, "holdout", "ref", reference=reference)) == [0.5]
    assert list(membership_scores(target, "forget", "loss")) == [-1.0, -2.0]
    with pytest.raises(ValueError):
        membership_scores(target, "forget", "ref")
    with pytest.raises(ValueError):
        membership_scores(target, "forget", "ref", reference=_output([("forget", "a", 1.0)]))


def test_bad_k_is_refused(tiny, make_suite):
    with pytest.raises(ValueError):
        MembershipInference().run(tiny.lm(), tiny.tokenizer, make_suite(forget_texts=["x y"], holdout_texts=["z"]),
                                  ProbeSettings(mink_k=0.0))
