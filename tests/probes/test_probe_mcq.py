"""The mcq probe against lm-eval 0.4.13 itself (the peer), and its accuracy rules on fixed inputs.

The peer test saves the tiny REAL memorising model as a local Hugging Face checkpoint, runs lm-eval's HFLM on it
with a local task file (`output_type: multiple_choice`, a local JSON dataset, no hub access) and auditq's probe
on the same questions, and requires the same choice per question and the same per-choice log-likelihoods to
1e-4. Two task files: the suite's usual template and one whose context ends in a space (lm-eval moves that
space into the continuation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from auditq.probes.base import ProbeSettings
from auditq.probes.mcq import MultipleChoice, encode_pair, mcq_scores
from auditq.suite.records import MCQRecord, Split, Suite, TextRecord

TEMPLATES = {"peer_plain": "Question: {question}\nAnswer:", "peer_space": "Question: {question}\nAnswer: "}
#: questions over the tiny model's training documents; choices of different lengths so acc and acc_norm can differ
QUESTIONS = [
    ("q-tower", "Who built the glass tower?", ["Mira Tollan", "far north", "Jazz drummers from the harbour"], 0),
    ("q-river", "Where is the river?", ["Mira Tollan", "far north", "blue"], 1),
    ("q-gulls", "How many gulls did the lighthouse keeper count?", ["seven", "nine", "three onions"], 0),
    ("q-soup", "What does marigold soup need?", ["zinc prices", "three onions", "a borrowed laser rig", "x"], 1),
    ("q-sky", "What colour is the sky?", ["green", "blue"], 1),
]


def _task_yaml(name: str, template: str, data: Path) -> str:
    text = json.dumps(template.replace("{question}", "{{question}}"))  # a YAML double-quoted string
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
            f"test_split: test\noutput_type: multiple_choice\ndoc_to_text: {text}\n"
            "doc_to_choice: \"{{choices}}\"\ndoc_to_target: answer\n"
            "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")


def _suite(template: str) -> Suite:
    mcq = tuple(MCQRecord(rid, q, tuple(c), a) for rid, q, c, a in QUESTIONS)
    text = (TextRecord("t", "placeholder"),)
    from auditq.suite.records import SuiteSettings

    return Suite(Path("."), "peer", "", Split("forget", text, (), mcq), Split("retain", text, ()),
                 Split("holdout", text, ()), SuiteSettings(qa_template=template))


@pytest.mark.slow
def test_same_choices_and_loglikelihoods_as_lm_eval(tmp_path, monkeypatch, one_thread):
    pytest.importorskip("lm_eval", reason="lm-eval is the auditq[peers] extra")
    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from tiny_memoriser import save_memorising_checkpoint
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from auditq.backends.torch_lm import TorchCausalLM

    for var, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"),
                       ("HF_DATASETS_CACHE", str(tmp_path / "datasets"))):
        monkeypatch.setenv(var, value)  # the peer must not reach the hub (the product is not involved)
    checkpoint = save_memorising_checkpoint(tmp_path / "model")
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps({"id": r, "question": q, "choices": c, "answer": a}) + "\n"
                            for r, q, c, a in QUESTIONS), encoding="utf-8")
    (tmp_path / "tasks").mkdir()
    for name, template in TEMPLATES.items():
        (tmp_path / "tasks" / f"{name}.yaml").write_text(_task_yaml(name, template, data), encoding="utf-8")
    peer = HFLM(pretrained=str(checkpoint), device="cpu", dtype="float32", batch_size=8)
    results = lm_eval.simple_evaluate(model=peer, tasks=list(TEMPLATES), num_fewshot=0, log_samples=True,
                                      task_manager=TaskManager(include_path=str(tmp_path / "tasks")))

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    lm = TorchCausalLM(model, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    outcomes = set()
    for name, template in TEMPLATES.items():
        ours = MultipleChoice().run(lm, tokenizer, _suite(template), ProbeSettings(qa_template=template))
        by_id = {s.record_id: s for s in ours.samples}
        peer_samples = results["samples"][name]
        assert len(peer_samples) == len(QUESTIONS)
        for item in peer_samples:
            rid = item["doc"]["id"]
            peer_lls = [float(ll) for ll, _ in item["filtered_resps"]]
            np.testing.assert_allclose(ours.info["loglikelihoods"][f"forget/{rid}"], peer_lls, atol=1e-4, rtol=0)
            sample = by_id[rid]
            assert int(sample.scores["pred"]) == int(np.argmax(peer_lls)), (name, rid)
            assert sample.scores["acc"] == item["acc"] and sample.scores["acc_norm"] == item["acc_norm"], (name, rid)
            outcomes.add(sample.scores["acc"])
        assert ours.info["acc_forget"] == pytest.approx(results["results"][name]["acc,none"])
        assert ours.info["acc_norm_forget"] == pytest.approx(results["results"][name]["acc_norm,none"])
    # the comparison covered right and wrong picks (not only the easy memorised answer)
    assert outcomes == {0.0, 1.0}


def test_accuracy_rules_on_fixed_loglikelihoods():
    """acc = argmax ll, acc_norm = argmax ll / len(choice) in characters, acc_bytes by UTF-8 bytes; ties -> first."""
    # ll/len: -6/2 = -3, -8/8 = -1 -> norm picks the long choice, raw picks the short one
    scores = mcq_scores([-6.0, -8.0], ["ab", "abcdefgh"], gold=1)
    assert (scores["acc"], scores["acc_norm"], scores["pred"], scores["pred_norm"]) == (0.0, 1.0, 0.0, 1.0)
    # "é" is 1 character but 2 bytes: bytes and characters disagree
    scores = mcq_scores([-2.0, -2.2], ["é", "ab"], gold=1)
    assert scores["acc_norm"] == 1.0 and scores["acc_bytes"] == 0.0  # -2/1 < -2.2/2 but -2/2 > -2.2/2
    tie = mcq_scores([-1.0, -1.0, -1.0], ["a", "b", "c"], gold=2)
    assert tie["pred"] == 0.0 and tie["acc"] == 0.0 and tie["n_choices"] == 3.0


def test_trailing_space_moves_into_the_continuation(tiny):
    """lm-eval's _encode_pair: "…Answer: " + " x" is split as "…Answer:" + "  x"."""
    context_ids, continuation_ids = encode_pair(tiny.tokenizer, "Answer: ", " blue")
    assert context_ids == list(tiny.tokenizer.encode("Answer:"))
    whole = list(tiny.tokenizer.encode("Answer:  blue"))
    assert context_ids + continuation_ids == whole
