"""VerbMem on a tiny model that has memorised three texts."""

from __future__ import annotations

from rouge_score.rouge_scorer import RougeScorer

from auditq.probes import PROBES
from auditq.probes.base import ProbeSettings
from auditq.probes.verbmem import VerbMem

SETTINGS = ProbeSettings(prefix_tokens=6, max_new_tokens=16)


class RecordingLM:
    """Delegates to the real TorchCausalLM and remembers the prompts it was given."""

    def __init__(self, lm):
        self.lm = lm
        self.prompts = []

    def generate(self, prompts, max_new_tokens):
        self.prompts.extend(prompts)
        return self.lm.generate(prompts, max_new_tokens)

    def score(self, sequences):
        return self.lm.score(sequences)


def test_registered_name():
    assert PROBES.load("verbmem") is VerbMem
    assert VerbMem.name == "verbmem"


def test_memorised_text_scores_one_and_unseen_text_low(tiny, make_suite):
    suite = make_suite(forget_texts=tiny.memorised + tiny.unseen)
    out = VerbMem().run(tiny.lm(), tiny.tokenizer, suite, SETTINGS)
    assert out.probe == "verbmem"
    assert [s.split for s in out.samples] == ["forget"] * len(suite.forget.texts)
    assert out.ids("forget") == [r.id for r in suite.forget.texts]
    scores = out.values("forget", "rougeL_f1")
    n = len(tiny.memorised)
    assert list(scores[:n]) == [1.0] * n
    assert scores[n:].max() < 0.5 and scores[n:].mean() < 0.25
    assert out.info["n_scored"] == len(suite.forget.texts) and out.info["n_skipped_short"] == 0
    assert out.info["mean_rougeL_f1"] == scores.mean()


def test_prompt_reference_and_score_are_built_from_the_token_ids(tiny, make_suite):
    tok = tiny.tokenizer
    text = tiny.unseen[1]
    recorder = RecordingLM(tiny.lm())
    out = VerbMem().run(recorder, tok, make_suite(forget_texts=[text]), SETTINGS)
    body = tok(text, add_special_tokens=False)["input_ids"]
    # BOS is extra: the prompt holds prefix_tokens tokens of the text itself
    assert recorder.prompts == [[tiny.bos] + body[:6]]
    (sample,) = out.samples
    assert sample.prompt == tok.decode(body[:6])
    assert sample.reference == tok.decode(body[6:22])
    generated = tiny.lm().generate([[tiny.bos] + body[:6]], 16)[0]
    assert sample.generation == tok.decode(generated, skip_special_tokens=True)
    expected = RougeScorer(["rougeL"], use_stemmer=False).score(sample.reference, sample.generation)["rougeL"]
    assert sample.scores["rougeL_f1"] == expected.fmeasure


def test_short_records_are_skipped_and_counted(tiny, make_suite):
    suite = make_suite(forget_texts=["Desert foxes", tiny.memorised[0]])
    out = VerbMem().run(tiny.lm(), tiny.tokenizer, suite, SETTINGS)
    assert out.ids("forget") == ["forget-1"]
    assert out.info["n_records"] == 2 and out.info["n_skipped_short"] == 1


def test_generation_is_cut_to_a_short_reference(tiny, make_suite):
    # the memorised text has < 6 + 200 tokens: reproducing it exactly still scores 1.0
    settings = ProbeSettings(prefix_tokens=6, max_new_tokens=200)
    out = VerbMem().run(tiny.lm(), tiny.tokenizer, make_suite(forget_texts=[tiny.memorised[2]]), settings)
    (sample,) = out.samples
    assert out.info["n_short_reference"] == 1
    assert sample.scores["rougeL_f1"] == 1.0
    assert tiny.memorised[2] == sample.prompt + sample.reference


def test_batching_does_not_change_results(tiny, make_suite):
    suite = make_suite(forget_texts=tiny.memorised + tiny.unseen + ("A parliament of owls debated",))
    one = VerbMem().run(tiny.lm(batch_size=1), tiny.tokenizer, suite, SETTINGS)
    many = VerbMem().run(tiny.lm(batch_size=3), tiny.tokenizer, suite, SETTINGS)
    assert one.samples == many.samples
    assert VerbMem().size(suite) == len(suite.forget.texts)
