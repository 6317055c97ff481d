"""The tofu probe against an INDEPENDENT port of open-unlearning's code.

Reference: locuslab/open-unlearning at commit d3d7cf9e6b3c125d16687d4232680d8d83548f1a (2025-12-23):
- src/data/utils.py preprocess_chat_instance (apply_chat_template False; labels = IGNORE on the prompt's
  tokens, EOS appended),
- src/evals/metrics/utils.py evaluate_probability, tokenwise_vocab_logprobs, aggregate_to_1D,
- src/evals/metrics/memorization.py truth_ratio (closer_to_1_better, true_better), exact_memorization,
  extraction_strength; src/evals/metrics/privacy.py ks_test; src/evals/metrics/utility.py hm_aggregate.
The functions below are transcribed from those files (torch and scipy, as there); none calls auditq.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy as sc
import torch
from torch import nn

from auditq.errors import InputError
from auditq.probes import tofu_metrics as tm
from auditq.probes.base import ProbeSettings
from auditq.probes.tofu import TofuMetrics
from auditq.suite.records import QARecord, Split, Suite, load_suite
from tests.suite_files import write_suite

IGNORE_INDEX = -100
TEMPLATE = "Question: {question}\nAnswer:"


# ----------------------------------------------------------------- open-unlearning, transcribed

def ou_preprocess(tokenizer, question: str, response: str):
    """preprocess_chat_instance without a chat template: user_start_tag "Question: ", user_end_tag
    "\\nAnswer:", asst_start_tag "" and the response " " + answer (auditq's qa_as_text join)."""
    wrapped_prompt = "Question: " + question + "\nAnswer:"
    chat_ids = tokenizer(wrapped_prompt + response, add_special_tokens=True, max_length=512, truncation=True)["input_ids"]
    prompt_ids = tokenizer(wrapped_prompt, add_special_tokens=True, max_length=512, truncation=True)["input_ids"]
    if chat_ids[-1] != tokenizer.eos_token_id:
        chat_ids += [tokenizer.eos_token_id]
    labels = [IGNORE_INDEX] * len(prompt_ids) + chat_ids[len(prompt_ids):]
    return {"input_ids": torch.tensor([chat_ids]), "labels": torch.tensor([labels]),
            "attention_mask": torch.ones(1, len(chat_ids), dtype=torch.long)}


def ou_evaluate_probability(model, batch):
    with torch.no_grad():
        output = model(**batch)
    logits = output.logits
    labels = batch["labels"]
    shifted_labels = labels[..., 1:].contiguous()
    logits = logits[..., :-1, :].contiguous()
    loss_function = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="none")
    losses = loss_function(logits.transpose(-1, -2), shifted_labels).sum(dim=-1)
    num_token_gt = (batch["labels"] != IGNORE_INDEX).sum(-1)
    avg_losses = losses / num_token_gt
    return {"prob": torch.exp(-avg_losses).item(), "avg_loss": avg_losses.item()}


def ou_tokenwise_vocab_logprobs(model, batch):
    with torch.no_grad():
        logits = model(**batch).logits
    log_probs = torch.nn.functional.log_softmax(logits, dim=-1)[:, :-1, :]
    labels = batch["labels"][0]
    actual_indices = (labels != IGNORE_INDEX).nonzero(as_tuple=True)[0][:-1]
    start_idx, end_idx = actual_indices[0].item(), actual_indices[-1].item()
    return log_probs[0, start_idx - 1: end_idx], labels[actual_indices]


def ou_em(log_probs, labels):
    preds = torch.argmax(log_probs, dim=-1)
    return ((preds == labels).sum() / len(labels)).item()


def ou_es(log_probs, labels):
    valid_len = len(labels)
    preds = torch.argmax(log_probs, dim=-1)
    for k in range(valid_len):
        if torch.equal(preds[k:], labels[k:]):
            break
    return 1 - (k / valid_len)


def ou_truth_ratios(correct_avg_losses, wrong_avg_losses):
    aggregate_to_1d = lambda x: np.mean(x, axis=tuple(range(1, x.ndim)))  # noqa: E731
    correct = aggregate_to_1d(np.array(correct_avg_losses))
    wrong = aggregate_to_1d(np.array(wrong_avg_losses))
    return np.exp(-wrong) / (np.exp(-correct) + 1e-10)


def ou_closer_to_1_better(arr):
    return np.mean(np.minimum(arr, 1 / (arr + 1e-10)))


def ou_true_better(arr):
    return np.mean(np.maximum(0, 1 - arr))


# ----------------------------------------------------------------- formulas on fixed inputs

def test_truth_ratio_and_aggregates_match_open_unlearning():
    rng = np.random.default_rng(7)
    para = rng.uniform(0.1, 4.0, size=40)
    pert = rng.uniform(0.1, 4.0, size=(40, 5))
    expected = ou_truth_ratios(para, pert)
    ours = np.array([tm.truth_ratio(p, q) for p, q in zip(para, pert)])
    assert np.max(np.abs(ours - expected)) <= 1e-6
    assert abs(tm.closer_to_1_better(ours) - ou_closer_to_1_better(expected)) <= 1e-6
    assert abs(tm.true_better(ours) - ou_true_better(expected)) <= 1e-6
    assert tm.probability(1.5) == pytest.approx(np.exp(-1.5), abs=1e-12)


def test_forget_quality_and_model_utility_match_open_unlearning():
    rng = np.random.default_rng(3)
    unl, ret = rng.lognormal(0, 1, 30), rng.lognormal(0.4, 1, 25)
    assert abs(tm.forget_quality(unl, ret) - sc.stats.ks_2samp(unl, ret).pvalue) <= 1e-12
    assert tm.forget_quality(ret, ret) == 1.0
    values = [0.81, 0.42, 0.37]
    assert abs(tm.model_utility(values) - sc.stats.hmean(values)) <= 1e-12
    assert tm.model_utility([0.5, 0.0, 0.3]) == 0.0  # hmean with a zero component


@pytest.mark.parametrize("preds,labels", [([5, 6, 7, 8], [5, 6, 7, 8]), ([1, 6, 7, 8], [5, 6, 7, 8]),
                                          ([5, 6, 0, 8], [5, 6, 7, 8]), ([0, 0, 0, 0], [5, 6, 7, 8]),
                                          ([0, 0, 0, 8], [5, 6, 7, 8]), ([9], [9]), ([2], [9])])
def test_em_and_es_match_open_unlearning_loops(preds, labels):
    # one-hot log-probs whose argmax is `preds`, so the reference runs on the tensors it expects
    log_probs = torch.full((len(preds), 10), -5.0)
    log_probs[torch.arange(len(preds)), torch.tensor(preds)] = 0.0
    assert abs(tm.exact_memorization(preds, labels) - ou_em(log_probs, torch.tensor(labels))) <= 1e-6
    assert abs(tm.extraction_strength(preds, labels) - ou_es(log_probs, torch.tensor(labels))) <= 1e-6


# ----------------------------------------------------------------- the probe on a real tiny model

def _suite(tiny) -> Suite:
    qa = (QARecord("known", tiny.qa_question, tiny.qa_answer, "Mira Tollan built it", ("Ada Voss", "Mira Tollen")),
          QARecord("river", "Where is the river?", "far north", "to the far north", ("far south", "near the dam")))
    retain = (QARecord("sky", "What colour is the sky?", "blue", "it is blue", ("green", "red", "copper")),)
    empty = Split("holdout", (), ())
    return Suite(path=__import__("pathlib").Path("."), name="tofu", description="",
                 forget=Split("forget", (), qa), retain=Split("retain", (), retain), holdout=empty)


def test_probe_matches_open_unlearning_per_sample(tiny, one_thread):
    suite = _suite(tiny)
    out = TofuMetrics().run(tiny.lm(), tiny.tokenizer, suite, ProbeSettings(qa_template=TEMPLATE, answer_tokens=8))
    assert [(s.split, s.record_id) for s in out.samples] == [("forget", "known"), ("forget", "river"),
                                                             ("retain", "sky")]
    for sample, record in zip(out.samples, suite.forget.qa + suite.retain.qa):
        ref = ou_evaluate_probability(tiny.model, ou_preprocess(tiny.tokenizer, record.question, " " + record.answer))
        para = ou_evaluate_probability(tiny.model, ou_preprocess(tiny.tokenizer, record.question,
                                                                 " " + record.paraphrased_answer))
        pert = [ou_evaluate_probability(tiny.model, ou_preprocess(tiny.tokenizer, record.question, " " + a))
                for a in record.perturbed_answers]
        scores = sample.scores
        assert abs(scores["avg_loss"] - ref["avg_loss"]) <= 1e-5 * max(1.0, ref["avg_loss"])
        assert abs(scores["prob"] - ref["prob"]) <= 1e-6
        ratio = ou_truth_ratios([para["avg_loss"]], [[p["avg_loss"] for p in pert]])[0]
        assert abs(scores["truth_ratio"] - ratio) <= 1e-5 * max(1.0, ratio)
        log_probs, labels = ou_tokenwise_vocab_logprobs(
            tiny.model, ou_preprocess(tiny.tokenizer, record.question, " " + record.answer))
        assert abs(scores["em"] - ou_em(log_probs, labels)) <= 1e-6
        assert abs(scores["es"] - ou_es(log_probs, labels)) <= 1e-6
    known = out.samples[0].scores
    assert known["em"] == 1.0 and known["es"] == 1.0  # the memorised answer (prob counts EOS, never trained)
    assert known["truth_ratio"] < 1.0  # its paraphrase beats the wrong names
    assert out.info["n_forget"] == 2 and 0 <= out.info["model_utility_retain"] <= 1


# ----------------------------------------------------------------- suite fields, light stage

def test_suite_fields_are_read_and_bad_ones_exit_2(tmp_path):
    good = {"question": "Where?", "answer": "Brill", "paraphrased_answer": "in Brill",
            "perturbed_answers": ["in Oxe", "in Tamm"]}
    suite = load_suite(write_suite(tmp_path / "ok", forget=[{"text": "Alice was born in Brill."}, good]))
    assert suite.forget.qa[0].paraphrased_answer == "in Brill"
    assert suite.forget.qa[0].perturbed_answers == ("in Oxe", "in Tamm")
    for bad, field in (({**good, "paraphrased_answer": ""}, "paraphrased_answer"),
                       ({**good, "perturbed_answers": "in Oxe"}, "perturbed_answers"),
                       ({**good, "perturbed_answers": []}, "perturbed_answers"),
                       ({**good, "perturbed_answers": ["in Oxe", 3]}, "perturbed_answers")):
        with pytest.raises(InputError, match=f"forget.jsonl:2: '{field}'"):
            load_suite(write_suite(tmp_path / field / str(id(bad)), forget=[{"text": "A b."}, bad]))


def test_check_suite_names_the_record_lacking_tofu_fields(tmp_path):
    plain = {"question": "Where?", "answer": "Brill", "id": "q1"}
    suite = load_suite(write_suite(tmp_path / "s", forget=[{"text": "Alice was born in Brill."}, plain]))
    with pytest.raises(InputError, match=r"forget.jsonl: the tofu probe needs .*\(record 'q1' lacks"):
        TofuMetrics().check_suite(suite)
