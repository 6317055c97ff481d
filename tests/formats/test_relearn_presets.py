"""relearn:lucki, relearn:uds, relearn:deeb run their sources' published settings (read 2026-12-03).

Each test applies the preset to the tiny REAL model (tests/tiny_memoriser.py) and asserts what the
trainer actually ran with, read from the optimizer, the scheduler and peft's own LoraConfig (the row's
`trainer` details), not from the parsed spec. The lr of every step is compared with transformers'
get_linear_schedule_with_warmup (what the sources' Trainer uses) driven independently here.

- Łucki et al. (ethz-spylab/unlearning-vs-safety src/finetuning/finetune.py): LoRA r=128, alpha=16,
  dropout 0 on q/k/v/o/gate/up/down; AdamW lr 2e-4, weight decay 0.01; warmup_ratio 0.05 + linear decay;
  3 epochs at batch 1; 10 unrelated examples (the paper); sequences <= 1024 tokens.
- UDS (gnueaj/unlearning-depth-score scripts/meta_eval_robustness.py finetune_on_forget10): full fine-tune,
  1 epoch, lr 2e-5, batch 4 x grad_accum 4 = 16, warmup 0, weight decay 0, linear decay, on all of the
  forget set, scored on the same set.
- Deeb & Roger (arXiv 2410.08827): fine-tune on some forget facts, score only the others.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from tiny_memoriser import MEMORISED, UNSEEN, train_model, train_tokenizer  # noqa: E402

from auditq.formats import make_format  # noqa: E402
from auditq.formats.base import FormatContext  # noqa: E402
from auditq.formats.relearn_data import scored_view  # noqa: E402
from auditq.suite.records import load_suite  # noqa: E402

CALIBRATION = [f"Line {i}: the weather over the harbour changed {i} times before noon." for i in range(12)]


class _Ckpt:
    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.config = model, tokenizer, model.config
        self.pad_token_id, self.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = train_tokenizer()
    model, _ = train_model(tok)
    root = tmp_path_factory.mktemp("suite")
    people = [f"Person {c} lives in Town{c} and keeps a cat called Tab{c}." for c in "ABCDEFGHIJKLMNOPQRST"]
    forget = [{"id": f"f{i}", "text": t} for i, t in enumerate((*MEMORISED, *people))]
    forget += [{"id": f"q{c}", "question": f"Where does Person {c} live?", "answer": f"Town{c}"} for c in "ABCD"]
    lines = {"forget": forget, "retain": [{"id": f"r{i}", "text": t} for i, t in enumerate(UNSEEN)],
             "holdout": [{"id": f"h{i}", "text": t} for i, t in enumerate(UNSEEN)]}
    for name, records in lines.items():
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (root / "calibration.txt").write_text("\n".join(CALIBRATION) + "\n")
    (root / "suite.toml").write_text('[probes]\nprefix_tokens = 4\nmax_new_tokens = 8\ncalibration = "calibration.txt"\n')
    return _Ckpt(model, tok), load_suite(root)


def _apply(ckpt, suite, spec: str, tmp_path):
    fmt = make_format(spec)
    fmt.suite_view(suite, 0)  # as the executor does before apply (relearn:forget/deeb note their halves)
    ctx = FormatContext(workdir=tmp_path, calibration_texts=suite.calibration_texts(), seed=0, suite=suite,
                        role="unlearned")
    before = {k: v.detach().clone() for k, v in ckpt.model.state_dict().items()}
    with fmt.apply(ckpt, ctx) as lm:
        assert lm.score([[1, 5, 6, 7]])[0].n_tokens == 3
    after = ckpt.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items())
    return fmt.details()


def _hf_linear_lrs(lr: float, warmup: int, total: int) -> list[float]:
    """The lr of each optimizer step under transformers' own get_linear_schedule_with_warmup."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_lucki_runs_the_published_recipe(tiny, tmp_path):
    ckpt, suite = tiny
    info = _apply(ckpt, suite, "relearn:lucki", tmp_path)
    trainer = info["trainer"]
    assert info["preset"] == "relearn:lucki" and info["data"] == "generic"
    assert info["n_texts"] == 10 and len(suite.calibration_texts()) == 12  # the first 10 unrelated examples
    total = 10 * 3  # 3 epochs of 10 examples at batch 1
    assert trainer["steps"] == total and trainer["warmup_steps"] == math.ceil(0.05 * total) == 2
    assert trainer["optimizer"] == "AdamW" and trainer["weight_decay"] == 0.01
    assert trainer["betas"] == [0.9, 0.999] and trainer["eps"] == 1e-8
    assert trainer["lr_curve"] == pytest.approx(_hf_linear_lrs(2e-4, 2, total), abs=1e-12)
    assert trainer["lr_curve"][0] == 0.0 and max(trainer["lr_curve"]) == pytest.approx(2e-4)
    lora = trainer["lora"]
    assert lora["lora_alpha"] == 16 and lora["lora_dropout"] == 0.0
    assert lora["target_modules"] == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # hidden 32 < r=128: the rank is capped at the smallest targeted dimension and the row says so
    assert lora["r"] == 32 and any("rank 128" in a and "rank 32 used" in a for a in info["adaptations"])
    assert "adapted to this model" in info["note"] and "weaker evidence" in info["note"]
    assert info["max_tokens"] == 1024 and info["changed_elements"] > 0


def test_uds_runs_the_published_recipe_on_the_whole_forget_set(tiny, tmp_path):
    ckpt, suite = tiny
    fmt = make_format("relearn:uds")
    assert fmt.suite_view(suite, 0) is suite  # UDS scores the records it relearned (its R needs --retrain)
    info = _apply(ckpt, suite, "relearn:uds", tmp_path)
    trainer = info["trainer"]
    n = len(suite.forget.texts) + len(suite.forget.qa)
    assert info["method"] == "full fine-tune" and info["n_texts"] == n == 27 and info["lr_used"] == 2e-5
    assert trainer["steps"] == math.ceil(n / 16) == 2 and trainer["warmup_steps"] == 0
    assert trainer["weight_decay"] == 0.0 and trainer["optimizer"] == "AdamW" and "lora" not in trainer
    assert trainer["lr_curve"] == pytest.approx(_hf_linear_lrs(2e-5, 0, 2), abs=1e-15) == [2e-5, 1e-5]
    assert "weaker evidence than relearn:lucki" in info["note"] and "peak lr 2e-05 < 0.0002" in info["note"]


def test_deeb_relearns_half_the_forget_facts_and_scores_the_others(tiny, tmp_path):
    ckpt, suite = tiny
    fmt = make_format("relearn:deeb")
    assert fmt.options.source == "forget" and fmt.suite_view(suite, 0) == scored_view(suite, 0)
    info = _apply(ckpt, suite, "relearn:deeb", tmp_path)
    assert info["preset"] == "relearn:deeb" and info["forget_texts_relearned"] == len(suite.forget.texts) // 2
    assert info["forget_texts_scored"] == len(suite.forget.texts) - len(suite.forget.texts) // 2
    assert info["trainer"]["steps"] == 30 and "note" not in info  # auto lr 1e-3 on a tiny model, 30 steps


def test_a_weaker_recipe_says_so_and_lucki_itself_does_not():
    from auditq.formats.relearn_recipe import strength_note

    weak = make_format("relearn:retain:lr=1e-5:steps=10").details()["note"]
    assert "peak lr 1e-05 < 0.0002" in weak and "10 optimizer steps < 30" in weak
    assert "a PASS here is weaker evidence than relearn:lucki" in weak
    assert "note" not in make_format("relearn:retain:lr=1e-3").details()
    assert strength_note(make_format("relearn:lucki").options, 2e-4, 30, []) is None
