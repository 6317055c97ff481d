"""KnowMem on a tiny model that has memorised one QA document."""

from __future__ import annotations

from auditq.probes import PROBES
from auditq.probes.base import ProbeSettings
from auditq.probes.knowmem import KnowMem
from auditq.probes.text import rouge_l_f1

SETTINGS = ProbeSettings(answer_tokens=14)


def test_registered_name():
    assert PROBES.load("knowmem") is KnowMem


def test_answer_is_cut_at_the_first_newline(tiny, make_suite):
    tok = tiny.tokenizer
    prompt = SETTINGS.qa_template.format(question=tiny.qa_question)
    raw = tok.decode(tiny.lm().generate([tok(prompt)["input_ids"]], 14)[0], skip_special_tokens=True)
    # the model runs on into the next question of its training document ...
    assert raw.startswith(f" {tiny.qa_answer}\n") and len(raw.split("\n", 1)[1]) > 0
    suite = make_suite(forget_qa=[(tiny.qa_question, tiny.qa_answer)],
                       retain_qa=[("What colour is the sky?", "blue")])
    out = KnowMem().run(tiny.lm(), tok, suite, SETTINGS)
    forget, retain = out.samples
    # ... but only the first line is its answer
    assert forget.split == "forget" and forget.generation == tiny.qa_answer
    assert forget.scores["rougeL_f1"] == 1.0
    assert forget.prompt == prompt and forget.reference == tiny.qa_answer
    assert retain.split == "retain" and retain.record_id == "retain-qa-0"
    assert retain.scores["rougeL_f1"] == rouge_l_f1(retain.generation, "blue") < 0.5
    assert out.info["n_forget"] == 1 and out.info["n_retain"] == 1
    assert list(out.values("forget", "rougeL_f1")) == [1.0]
    assert KnowMem().size(suite) == 2


def test_template_comes_from_settings(tiny, make_suite):
    settings = ProbeSettings(answer_tokens=6, qa_template="Q: {question} A:")
    suite = make_suite(forget_qa=[(tiny.qa_question, tiny.qa_answer)])
    (sample,) = KnowMem().run(tiny.lm(), tiny.tokenizer, suite, settings).samples
    assert sample.prompt == f"Q: {tiny.qa_question} A:"
    assert "\n" not in sample.generation


def test_batching_does_not_change_results(tiny, make_suite):
    qa = [(tiny.qa_question, tiny.qa_answer), ("Where is the river?", "far north"), ("Who?", "nobody")]
    suite = make_suite(forget_qa=qa, retain_qa=[("What colour is the sky?", "blue")])
    one = KnowMem().run(tiny.lm(batch_size=1), tiny.tokenizer, suite, SETTINGS)
    many = KnowMem().run(tiny.lm(batch_size=4), tiny.tokenizer, suite, SETTINGS)
    assert one.samples == many.samples
