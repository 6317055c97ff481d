"""SURE saliency on a model small enough to check by hand, and the percentile threshold."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from auditq.remediate.saliency import (
    compute_saliency,
    forget_gradients,
    percentile_threshold,
    saliency_from_gradients,
    saliency_mask,
)
from auditq.unlearning.unlearn import UnlearnConfig


class CharTok:
    """'a' -> 0, 'b' -> 1, 'c' -> 2; EOS 3; no BOS."""

    pad_token_id, eos_token_id = 3, 3

    def __call__(self, text):
        return SimpleNamespace(input_ids=[ord(c) - ord("a") for c in text])


class ToyLM(torch.nn.Module):
    """logits = head(proj(onehot(token))): proj = identity, head = zeros, so every softmax is uniform."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4, bias=False)
        self.head = torch.nn.Linear(4, 4, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(4))
            self.head.weight.zero_()

    def forward(self, input_ids, attention_mask=None):
        h = torch.nn.functional.one_hot(input_ids, 4).float()
        return SimpleNamespace(logits=self.head(self.proj(h)))


def hand_gradient() -> torch.Tensor:
    """d(−NLL)/d head.weight for "ab" (+EOS): tokens predict 1 from e0 and 3 from e1, p = 1/4 everywhere.

    NLL = mean over 2 tokens, so d NLL/dW = ½[(p − e1) e0ᵀ + (p − e3) e1ᵀ]; GA is its negative.
    """
    p = torch.full((4,), 0.25, dtype=torch.float64)
    e = torch.eye(4, dtype=torch.float64)
    d_nll = 0.5 * (torch.outer(p - e[1], e[0]) + torch.outer(p - e[3], e[1]))
    return -d_nll


def test_module_and_row_saliency_match_hand_computation():
    model = ToyLM()
    cfg = UnlearnConfig(forget_loss="ga", batch_size=1)
    grads = forget_gradients(model, CharTok(), ["ab"], cfg)
    assert torch.allclose(grads["head.weight"], hand_gradient(), atol=1e-7)
    assert torch.count_nonzero(grads["proj.weight"]) == 0  # head is zero: nothing flows back to proj
    module = saliency_from_gradients(grads, "module").module_scores()
    assert module["head.weight"] == pytest.approx(math.sqrt(0.375), abs=1e-7)  # ‖G‖_F² = ¼(3/16 + 9/16)·2
    assert module["proj.weight"] == 0.0
    rows = saliency_from_gradients(grads, "row").scores["head.weight"]
    expected = [math.sqrt(2) * 0.125, math.sqrt(0.375**2 + 0.125**2)] * 2
    assert rows.tolist() == pytest.approx(expected, abs=1e-7)


def test_gradients_are_summed_over_batches_not_averaged():
    model, tok = ToyLM(), CharTok()
    one = forget_gradients(model, tok, ["ab"], UnlearnConfig(batch_size=1))["head.weight"]
    two_batches = forget_gradients(model, tok, ["ab", "ab"], UnlearnConfig(batch_size=1))["head.weight"]
    one_batch = forget_gradients(model, tok, ["ab", "ab"], UnlearnConfig(batch_size=2))["head.weight"]
    assert torch.allclose(two_batches, 2 * one)  # Σ over batches
    assert torch.allclose(one_batch, one)  # a batch's loss is a mean over its tokens


def test_npo_saliency_at_the_original_is_the_sequence_level_ga_direction():
    """At θ = θ_ref the NPO gradient is ∇ log p(x) (sum over tokens): here 2 tokens, so 2 × the GA gradient."""
    model, tok = ToyLM(), CharTok()
    ga = forget_gradients(model, tok, ["ab"], UnlearnConfig(forget_loss="ga", batch_size=1))["head.weight"]
    npo = forget_gradients(model, tok, ["ab"], UnlearnConfig(forget_loss="npo", batch_size=1))["head.weight"]
    assert torch.allclose(npo, 2 * ga, atol=1e-7)


def test_saliency_leaves_the_model_as_it_was():
    model = ToyLM()
    model.proj.weight.requires_grad_(False)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forget_gradients(model, CharTok(), ["ab", "ba"], UnlearnConfig(batch_size=1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.proj.weight.requires_grad is False and model.head.weight.requires_grad is True
    assert model.training and model.head.weight.grad is None


def test_percentile_threshold_is_numpy_linear_percentile():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile_threshold(values, 50) == 3.0
    assert percentile_threshold(values, 90) == pytest.approx(4.6)
    assert percentile_threshold(values, 100) == 5.0
    assert percentile_threshold(values, 0) == 1.0
    assert percentile_threshold(np.arange(100.0), 99) == pytest.approx(np.percentile(np.arange(100.0), 99))
    with pytest.raises(ValueError):
        percentile_threshold(values, 101)
    with pytest.raises(ValueError):
        percentile_threshold([], 50)


def _saliency(scores: dict[str, float]):
    grads = {name: torch.full((2, 3), value / math.sqrt(6), dtype=torch.float64) for name, value in scores.items()}
    return saliency_from_gradients(grads, "module")


def test_mask_keeps_scores_at_or_above_gamma():
    sal = _saliency({f"m{i}.weight": float(i + 1) for i in range(10)})  # scores 1..10
    mask = saliency_mask(sal, 90)  # γ = 9.1: only the top module
    assert mask.gamma == pytest.approx(9.1)
    assert mask.selected_modules() == ["m9.weight"]
    assert mask.trainable_count() == 6 and mask.total_count() == 60
    half = saliency_mask(sal, 50)  # γ = 5.5
    assert half.selected_modules() == [f"m{i}.weight" for i in range(5, 10)]
    assert len(saliency_mask(sal, 0).selected_modules()) == 10
    assert saliency_mask(sal, 100).selected_modules() == ["m9.weight"]  # s ≥ γ keeps the maximum
    ties = saliency_mask(_saliency({"a.weight": 2.0, "b.weight": 2.0, "c.weight": 1.0}), 90)
    assert ties.selected_modules() == ["a.weight", "b.weight"]


def test_row_mask_selects_rows_across_modules():
    grads = {"a.weight": torch.tensor([[3.0, 4.0], [0.0, 1.0]]), "b.weight": torch.tensor([[0.0, 2.0], [6.0, 8.0]])}
    sal = saliency_from_gradients(grads, "row")  # row norms a: 5, 1; b: 2, 10
    mask = saliency_mask(sal, 50)  # γ = 3.5
    assert mask.trainable["a.weight"].tolist() == [[True, True], [False, False]]
    assert mask.trainable["b.weight"].tolist() == [[False, False], [True, True]]
    assert mask.selected_rows() == {"a.weight": 1, "b.weight": 1}
    assert mask.trainable_count() == 4


def test_compute_saliency_on_a_real_llama_scores_every_linear_weight(tiny):
    from auditq.checkpoint.load import load_checkpoint

    ckpt = load_checkpoint(tiny["base"], "base")
    sal = compute_saliency(ckpt.model, ckpt.tokenizer, ["The quick brown fox jumps."], UnlearnConfig(), "module")
    linear = {f"{n}.weight" for n, m in ckpt.model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(sal.scores) == linear and "lm_head.weight" in linear
    assert all(float(s) > 0 for s in sal.scores.values())


def test_row_saliency_of_a_conv1d_weight_runs_over_its_output_columns():
    """A weight stored (in, out) (transformers' Conv1D): its output rows are the stored columns."""
    grads = {"c.weight": torch.tensor([[3.0, 0.0, 1.0], [4.0, 0.0, 1.0]])}  # stored (in=2, out=3)
    sal = saliency_from_gradients(grads, "row", transposed=frozenset({"c.weight"}))
    assert sal.scores["c.weight"].tolist() == pytest.approx([5.0, 0.0, math.sqrt(2)])
    mask = saliency_mask(sal, 50)  # γ = sqrt(2): output channels 0 and 2
    assert mask.trainable["c.weight"].tolist() == [[True, False, True], [True, False, True]]
    assert mask.selected_rows() == {"c.weight": 2} and mask.trainable_count() == 4


def test_compute_saliency_on_gpt2_scores_every_conv1d_weight(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from formats.gguf_helpers import build_gpt2_checkpoint

    from auditq.checkpoint.load import load_checkpoint

    ckpt = load_checkpoint(build_gpt2_checkpoint(tmp_path / "gpt2"), "base")
    sal = compute_saliency(ckpt.model, ckpt.tokenizer, ["The quick brown fox jumps."], UnlearnConfig(), "row")
    conv = {f"transformer.h.{i}.{n}.weight" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                          "mlp.c_proj")}
    assert conv <= set(sal.scores) and sal.transposed == conv
    c_fc = ckpt.model.transformer.h[0].mlp.c_fc
    assert sal.scores["transformer.h.0.mlp.c_fc.weight"].shape == (c_fc.nf,)  # one score per output channel
