"""One contract test over every registered probe (auditq.probes.PROBES), under every probe protocol.

A probe's output feeds the result cache, the verdict stage and every report by score NAME and split, so
each probe declares `score_names` and `splits` (auditq.probes.base.Probe) and is held to them here: run on
the tiny REAL memorising model (tests/tiny_memoriser.py, through TorchCausalLM and transformers' generate,
nothing mocked) over a small complete suite, every registered probe must

- report its registered name and touch no more records than `size()` says;
- return samples whose score keys are exactly its declared `score_names`, with finite float values, from
  its declared `splits` only, each naming a record of that split once;
- give the same samples on a second run (greedy decoding: the result cache relies on it);
- survive the result cache's JSON round trip unchanged (info included).

A newly registered probe is picked up from the registry without editing this file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from auditq.probes import PROBES
from auditq.probes.base import Probe, ProbeOutput, ProbeSettings
from auditq.probes.muse import MUSE_ICL_EXAMPLES, PROTOCOLS
from auditq.suite.records import SPLITS, MCQRecord, QARecord, Split, Suite, TextRecord

#: short generations: the tiny model's texts are ~20 tokens, so a prefix of 6 leaves a continuation
SETTINGS = {"prefix_tokens": 6, "max_new_tokens": 12, "answer_tokens": 8}


def _suite(tiny) -> Suite:
    """Every split with texts, QA AND multiple-choice questions (enough retain QA that MUSE's in-context examples
    leave some to score)."""
    def split(name: str, texts, qa) -> Split:
        # every QA record carries TOFU's paraphrased / perturbed answers (the tofu probe needs them)
        mcq = (MCQRecord(f"{name}-mcq-0", qa[0][0], (qa[0][1], "somewhere else", "nobody knows"), 0),)
        return Split(name, tuple(TextRecord(f"{name}-{i}", t) for i, t in enumerate(texts)),
                     tuple(QARecord(f"{name}-qa-{i}", q, a, f"it is {a}", (f"not {a}", "far north"))
                           for i, (q, a) in enumerate(qa)), mcq)

    retain_qa = [(f"What is item {i}?", f"answer {i}") for i in range(MUSE_ICL_EXAMPLES + 2)]
    return Suite(path=Path("."), name="contract", description="",
                 forget=split("forget", tiny.memorised, [(tiny.qa_question, tiny.qa_answer)]),
                 retain=split("retain", tiny.unseen[:2], retain_qa),
                 holdout=split("holdout", tiny.unseen[2:], [("Where is the river?", "far north")]))


def test_every_probe_declares_its_scores_and_splits():
    assert PROBES.names(), "no probe registered"
    for name in PROBES.names():
        cls = PROBES.load(name)
        assert issubclass(cls, Probe) and cls.name == name, name
        assert cls.score_names and len(set(cls.score_names)) == len(cls.score_names), name
        assert cls.splits and set(cls.splits) <= set(SPLITS), name


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", PROBES.names())
def test_probe_contract(name: str, protocol: str, tiny, one_thread) -> None:
    from auditq.cache.store import _plain, output_from_json, output_to_json

    suite = _suite(tiny)
    probe = PROBES.load(name)()
    settings = ProbeSettings(**SETTINGS, protocol=protocol)
    probe.check_suite(suite)  # a complete suite is accepted
    out = probe.run(tiny.lm(), tiny.tokenizer, suite, settings)

    assert isinstance(out, ProbeOutput) and out.probe == name
    assert 0 < len(out.samples) <= probe.size(suite), (len(out.samples), probe.size(suite))
    seen: set[tuple[str, str]] = set()
    for sample in out.samples:
        assert sample.split in probe.splits, (name, sample.split, probe.splits)
        assert sample.record_id in _ids(suite, sample.split), (name, sample.split, sample.record_id)
        assert (sample.split, sample.record_id) not in seen, f"{name}: {sample.record_id} scored twice"
        seen.add((sample.split, sample.record_id))
        assert sorted(sample.scores) == sorted(probe.score_names), (name, sorted(sample.scores))
        for key, value in sample.scores.items():
            assert isinstance(value, float) and math.isfinite(value), (name, key, value)
    for split in {s.split for s in out.samples}:
        for key in probe.score_names:  # what the verdict stage reads
            assert len(out.values(split, key)) == len(out.ids(split))

    again = probe.run(tiny.lm(), tiny.tokenizer, suite, settings)
    assert again.samples == out.samples, f"{name} is not deterministic"

    stored = json.dumps(output_to_json(out), ensure_ascii=False, default=_plain)  # as the cache writes an entry
    cached = output_from_json(json.loads(stored))
    assert cached.probe == out.probe
    assert json.dumps(dict(cached.info), sort_keys=True) == json.dumps(dict(out.info), sort_keys=True, default=_plain)
    assert [(s.split, s.record_id, dict(s.scores), s.prompt, s.generation, s.reference) for s in cached.samples] == \
           [(s.split, s.record_id, dict(s.scores), s.prompt, s.generation, s.reference) for s in out.samples]


def _ids(suite: Suite, split: str) -> set[str]:
    """Record ids of a split: text, QA and MCQ ids (MIA with mia_qa scores QA pairs as texts)."""
    part = suite.split(split)
    return {r.id for r in part.texts} | {r.id for r in part.qa} | {r.id for r in part.mcq}
