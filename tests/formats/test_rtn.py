"""RTN as Zhang et al. define it: Q(w) = Δ·round(w/Δ), Δ = max|w| / 2^(N-1), clamped to N signed bits."""

import pytest
import torch

from auditq.errors import InputError
from auditq.formats import make_format
from auditq.formats.rtn import quantizable_weights, rtn_codes, rtn_quantize, to_groups


def test_per_channel_4bit_hand_computed():
    w = torch.tensor([[0.8, -0.36, 0.1, 0.04], [-2.0, 1.0, 0.3, -0.26]])
    # row 0: Δ = 0.8/8 = 0.1 -> codes 8→7 (clamped), -3.6→-4, 1, 0.4→0
    # row 1: Δ = 2/8 = 0.25 -> codes -8, 4, 1.2→1, -1.04→-1
    expected = torch.tensor([[0.7, -0.4, 0.1, 0.0], [-2.0, 1.0, 0.25, -0.25]])
    assert torch.allclose(rtn_quantize(w, 4), expected, atol=1e-7)


def test_8bit_is_close_and_grid_is_right():
    w = torch.tensor([[1.0, 0.5, -0.25, 0.0031]])
    q = rtn_quantize(w, 8)
    delta = 1.0 / 128
    assert torch.allclose(q, torch.tensor([[127 * delta, 64 * delta, -32 * delta, 0.0]]), atol=1e-7)


def test_groups_of_input_columns():
    w = torch.tensor([[1.0, 0.5, 0.01, 0.02]])
    # g2: group A Δ = 1/8 -> [7Δ, 4Δ]; group B Δ = 0.02/8 -> [4Δ', 7Δ'] (8 clamps to 7)
    q = rtn_quantize(w, 4, group_size=2)
    assert torch.allclose(q, torch.tensor([[0.875, 0.5, 0.01, 0.0175]]), atol=1e-7)


def test_ragged_last_group_and_zero_group():
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, 0.25, 0.3]])
    grouped, pad = to_groups(w, 2)
    assert pad == 1 and grouped.shape == (6, 2)
    q = rtn_quantize(w, 4, group_size=2)
    assert torch.equal(q[0], torch.zeros(5))
    assert q[1, 4].item() == pytest.approx(0.2625)  # lone column: Δ = 0.3/8, code 8 clamps to 7


def test_codes_range_signed():
    grouped = torch.randn(64, 32)
    for bits in range(2, 9):
        codes, _ = rtn_codes(grouped, bits)
        assert codes.min() >= -(2 ** (bits - 1)) and codes.max() <= 2 ** (bits - 1) - 1


def test_spec_parsing_and_errors():
    fmt = make_format("rtn4:g128")
    assert fmt.options.bits == 4 and fmt.options.group_size == 128
    assert make_format("RTN3:emb:nohead").options.include_embeddings
    for bad in ("rtn", "rtn9", "rtn1", "rtn4:g0", "rtn4:wat", "fp:g1", "zz4"):
        with pytest.raises(InputError):
            make_format(bad)


def test_apply_restores_weights_and_skips_embeddings():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=50,
                                         tie_word_embeddings=False))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = set(quantizable_weights(model, include_embeddings=False, include_head=True))
    assert "lm_head.weight" in names and "model.embed_tokens.weight" not in names

    class Ckpt:
        pass

    ckpt = Ckpt()
    ckpt.model, ckpt.pad_token_id, ckpt.eos_token_id = model, 0, 1
    from auditq.formats.base import FormatContext

    with make_format("rtn4").apply(ckpt, FormatContext(workdir=None)) as lm:
        during = model.state_dict()
        assert not torch.equal(during["lm_head.weight"], before["lm_head.weight"])
        assert torch.equal(during["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
        assert torch.equal(during["model.norm.weight"], before["model.norm.weight"])
        assert lm.description.endswith("rtn4")
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
