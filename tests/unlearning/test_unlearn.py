"""Fast unit tests of auditq.unlearning (losses, batching, masks, projection, loop) on a 2-layer toy Llama
(no training to convergence)."""

from __future__ import annotations

import math

import pytest
import torch

from auditq.formats.rtn import rtn_codes, rtn_quantize, to_groups
from auditq.unlearning import batching, loop, losses, masks, projection
from auditq.unlearning.config import UnlearnConfig

torch.set_num_threads(1)


class CharTokenizer:
    """Just enough of a HF tokenizer for unlearn(): BOS + one id per character."""

    bos_token_id, eos_token_id, pad_token_id = 0, 1, 2

    class _Enc:
        def __init__(self, ids):
            self.input_ids = ids

    def __call__(self, text: str):
        return self._Enc([self.bos_token_id] + [3 + (ord(c) % 29) for c in text])


def tiny_model(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         tie_word_embeddings=False, pad_token_id=2, bos_token_id=0, eos_token_id=1)
    return LlamaForCausalLM(config).eval()


FORGET = ["the cat sat on the mat", "a secret recipe for soup", "alpha beta gamma delta"]
RETAIN = ["the sun is hot today", "rivers run to the sea", "one two three four five"]


def batch_of(texts):
    tok = CharTokenizer()
    return batching.make_batch(batching.encode_texts(tok, texts), tok.pad_token_id)


def int_codes(weight: torch.Tensor, bits: int, group_size=None):
    grouped, _ = to_groups(weight.detach().double(), group_size)
    return rtn_codes(grouped, bits)


@pytest.mark.parametrize("group_size", [None, 8, 5])
def test_projection_keeps_codes_and_scale(group_size):
    torch.manual_seed(1)
    original = torch.randn(12, 21)
    moved = original + 0.5 * torch.randn(12, 21)  # far outside the cells
    projected = projection.rtn_cell_projection(moved, original, bits=4, group_size=group_size)
    codes_o, delta_o = int_codes(original, 4, group_size)
    codes_p, delta_p = int_codes(projected, 4, group_size)
    assert torch.equal(delta_o, delta_p)
    assert torch.equal(codes_o, codes_p)
    assert torch.equal(rtn_quantize(projected, 4, group_size), rtn_quantize(original, 4, group_size))
    assert not torch.equal(projected, original)  # it did move: only the cells are shared
    # 8-bit codes are free to differ: that is what makes the planted failure 4-bit-only
    assert not torch.equal(rtn_quantize(projected, 8, group_size), rtn_quantize(original, 8, group_size))


def test_projection_leaves_interior_points_alone():
    torch.manual_seed(2)
    original = torch.randn(4, 16)
    delta = original.abs().amax(1, keepdim=True) / 8
    q = torch.round(original / delta)
    inside = (q + 0.3 * (torch.rand_like(original) - 0.5)) * delta  # within ±0.15Δ of the centre
    inside = torch.maximum(torch.minimum(inside, original.abs().amax(1, keepdim=True)),
                           -original.abs().amax(1, keepdim=True))
    projected = projection.rtn_cell_projection(inside, original)
    peak = original.abs().argmax(1)
    keep = torch.ones_like(original, dtype=torch.bool)
    keep[torch.arange(4), peak] = False
    assert torch.allclose(projected[keep], inside[keep], atol=1e-6)
    assert torch.equal(projected[torch.arange(4), peak], original[torch.arange(4), peak])


def test_projection_zero_group_stays_zero():
    original = torch.zeros(2, 4)
    projected = projection.rtn_cell_projection(torch.ones(2, 4), original)
    assert torch.equal(projected, original)


def test_losses_at_reference():
    model = tiny_model()
    reference = tiny_model()  # identical weights (same seed)
    batch = batch_of(FORGET)
    with torch.no_grad():
        labels = batch.ids.masked_fill(batch.mask == 0, -100)
        hf_nll = float(model(input_ids=batch.ids, attention_mask=batch.mask, labels=labels).loss)
        assert float(losses.gdr_loss(model, batch)) == pytest.approx(hf_nll, rel=1e-5)
        assert float(losses.ga_loss(model, batch)) == pytest.approx(-hf_nll, rel=1e-5)
        # NPO at θ = θ_ref: −(2/β)·log σ(0) = (2/β)·log 2
        assert float(losses.npo_loss(model, reference, batch, beta=0.1)) == pytest.approx(20 * math.log(2), rel=1e-5)
        assert float(losses.klr_loss(model, reference, batch)) == pytest.approx(0.0, abs=1e-6)
        logp = losses.sequence_logprobs(model, batch)
        assert logp.shape == (len(FORGET),) and bool((logp < 0).all())


def test_loss_directions_after_moving():
    model, reference = tiny_model(), tiny_model()
    batch = batch_of(FORGET)
    config = UnlearnConfig(forget_loss="ga", retain_loss="none", lr=1e-2, max_steps=5, batch_size=3)
    loop.unlearn(model, CharTokenizer(), FORGET, [], config)
    with torch.no_grad():
        assert float(losses.klr_loss(model, reference, batch)) > 0
        # the forget data became less likely than under the reference, so NPO fell below (2/β)·log 2
        assert bool((losses.sequence_logprobs(model, batch) < losses.sequence_logprobs(reference, batch)).all())
        assert float(losses.npo_loss(model, reference, batch, beta=0.1)) < 20 * math.log(2)


def test_ga_raises_forget_nll():
    model = tiny_model()
    tok = CharTokenizer()
    batch = batch_of(FORGET)
    with torch.no_grad():
        before = float(losses.token_nll(model, batch))
    config = UnlearnConfig(forget_loss="ga", retain_loss="none", lr=1e-2, max_steps=5, batch_size=3)
    result = loop.unlearn(model, tok, FORGET, [], config)
    with torch.no_grad():
        after = float(losses.token_nll(model, batch))
    assert result.steps == 5 and not result.stopped_early
    assert after > before


@pytest.mark.parametrize("forget_loss,retain_loss", [("ga", "gdr"), ("npo", "klr"), ("npo", "gdr"), ("ga", "klr")])
def test_all_loss_combinations_run(forget_loss, retain_loss):
    model = tiny_model()
    reference = tiny_model()
    config = UnlearnConfig(forget_loss=forget_loss, retain_loss=retain_loss, lr=1e-3, max_steps=2, batch_size=2)
    result = loop.unlearn(model, CharTokenizer(), FORGET, RETAIN, config)
    assert len(result.history) == 2
    assert all(math.isfinite(log.loss) for log in result.history)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


def test_masked_entries_stay_bit_identical():
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    name = "model.layers.0.mlp.up_proj.weight"
    mask = torch.zeros_like(before[name], dtype=torch.bool)
    mask[:4] = True
    config = UnlearnConfig(lr=1e-2, max_steps=3, batch_size=3, weight_decay=0.1)
    loop.unlearn(model, CharTokenizer(), FORGET, RETAIN, config, trainable={name: mask})
    after = dict(model.named_parameters())
    assert torch.equal(after[name][~mask], before[name][~mask])
    assert not torch.equal(after[name][mask], before[name][mask])
    for other, value in before.items():
        if other != name:
            assert torch.equal(after[other], value), other
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_fragile_run_keeps_int4_codes():
    model = tiny_model()
    originals = masks.snapshot(masks.linear_weights(model))
    embed_before = model.get_input_embeddings().weight.detach().clone()
    config = UnlearnConfig(forget_loss="ga", retain_loss="gdr", retain_weight=5.0, lr=5e-3, max_steps=4, batch_size=3)
    seen = []
    loop.unlearn(model, CharTokenizer(), FORGET, RETAIN, config, trainable=masks.linear_weight_mask(model),
              after_step=lambda step, m: projection.project_into_rtn_cells(m, originals, bits=4),
              progress=lambda log: seen.append(log.step))
    assert seen == [1, 2, 3, 4]
    assert torch.equal(model.get_input_embeddings().weight, embed_before)
    moved = 0
    for name, weight in masks.linear_weights(model).items():
        codes_o, delta_o = int_codes(originals[name], 4)
        codes_n, delta_n = int_codes(weight, 4)
        assert torch.equal(delta_o, delta_n), name
        assert torch.equal(codes_o, codes_n), name
        moved += int((weight != originals[name]).sum())
    assert moved > 0


def test_should_stop_ends_early():
    model = tiny_model()
    config = UnlearnConfig(lr=1e-3, max_steps=10, batch_size=2)
    result = loop.unlearn(model, CharTokenizer(), FORGET, RETAIN, config, should_stop=lambda step: step >= 3)
    assert result.steps == 3 and result.stopped_early


def test_bad_config_and_mask_are_refused():
    with pytest.raises(ValueError):
        UnlearnConfig(forget_loss="dpo")
    model = tiny_model()
    with pytest.raises(KeyError):
        loop.unlearn(model, CharTokenizer(), FORGET, RETAIN, UnlearnConfig(max_steps=1), trainable={"nope": True})


def test_focused_batches_without_focus_is_the_plain_stream():
    import random

    seqs = [[i, i + 1] for i in range(7)]
    plain = batching.batches(seqs, 3, 0, random.Random(5))
    focused = batching.focused_batches(seqs, 3, 0, random.Random(5), focus=lambda: None)
    for _ in range(10):
        assert torch.equal(next(plain).ids, next(focused).ids)


def test_focused_batches_draw_only_the_named_sequences_and_follow_changes():
    import random

    seqs = [[i] for i in range(10)]
    chosen = {"now": [2, 7]}
    stream = batching.focused_batches(seqs, 4, -1, random.Random(0), focus=lambda: chosen["now"])
    seen = {int(v) for _ in range(5) for v in next(stream).ids.ravel()}
    assert seen == {2, 7}
    chosen["now"] = [4]
    assert next(stream).ids.ravel().tolist() == [4]
    chosen["now"] = []  # nothing left to focus on: the whole set again
    seen = {int(v) for _ in range(6) for v in next(stream).ids.ravel()}
    assert seen == set(range(10))


def test_a_changed_forget_focus_restarts_adamw_momentum(monkeypatch):
    """A constant focus (None) is the unfocused run bit for bit; when the focus changes, AdamW's first moments
    are zeroed, so the next step no longer follows the old selection's gradient at full size."""
    config = UnlearnConfig(forget_loss="ga", retain_loss="none", lr=1e-2, max_steps=6, batch_size=3, seed=0)

    def run(focus_from: int | None):
        model = tiny_model()
        done = {"steps": 0}
        snaps = []

        def after(step, m):
            done["steps"] = step
            snaps.append(m.lm_head.weight.detach().clone())

        focus = None if focus_from is None else (lambda: [0] if done["steps"] >= focus_from else None)
        loop.unlearn(model, CharTokenizer(), FORGET, RETAIN, config, after_step=after, forget_focus=focus)
        return snaps

    plain, never = run(None), run(99)
    assert all(torch.equal(a, b) for a, b in zip(plain, never))
    switched = run(5)
    reset_step = (switched[5] - switched[4]).abs().mean()
    monkeypatch.setattr(loop, "_reset_momentum", lambda optimizer: None)
    kept = run(5)
    assert torch.equal(kept[4], switched[4])
    kept_step = (kept[5] - kept[4]).abs().mean()
    assert reset_step < 0.6 * kept_step, (float(reset_step), float(kept_step))
