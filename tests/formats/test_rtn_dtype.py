"""RTN in the compute dtype (bfloat16 here): integer codes × a scale kept in the model's dtype.

- BASE and UNLEARNED whose weights differ but whose codes are identical give bit-identical bf16 weights;
- the rare element whose code changes when a float32 checkpoint is computed in bfloat16 is counted and reported;
- after the format, weights come back from the safetensors file, bit-identical to the loaded ones.
"""

from __future__ import annotations

import torch

from auditq.formats import make_format
from auditq.formats.base import FormatContext
from auditq.formats.rtn import codes_changed_by_cast, rtn_codes, rtn_quantize, to_groups


def _codes(w: torch.Tensor, bits: int, group: int | None) -> torch.Tensor:
    grouped, _ = to_groups(w.double(), group)
    return rtn_codes(grouped, bits)[0]


def test_identical_codes_give_bit_identical_bf16_weights():
    torch.manual_seed(0)
    base = torch.randn(64, 256).to(torch.bfloat16)
    bits, group = 4, 128
    # nudge every element one bf16 ulp toward zero (sign-magnitude bits - 1): no group max can grow;
    # keep the nudge only where the code stays put and the element is not its group's max
    candidate = torch.where(base != 0, (base.view(torch.int16) - 1).view(torch.bfloat16), base)
    grouped_abs = base.abs().reshape(64, 2, 128)
    is_max = (grouped_abs == grouped_abs.amax(-1, keepdim=True)).reshape(64, 256)
    candidate = torch.where(is_max, base, candidate)
    same_code = (_codes(candidate, bits, group) == _codes(base, bits, group)).reshape(64, 256)
    unlearned = torch.where(same_code, candidate, base)
    assert (unlearned != base).sum() > 1000          # the weights really differ
    assert torch.equal(_codes(unlearned, bits, group), _codes(base, bits, group))
    qa, qb = rtn_quantize(base, bits, group), rtn_quantize(unlearned, bits, group)
    assert qa.dtype == torch.bfloat16
    assert torch.equal(qa.view(torch.int16), qb.view(torch.int16))  # bit-identical


def test_dequantization_is_codes_times_scale_in_bf16():
    torch.manual_seed(1)
    w = torch.randn(8, 64).to(torch.bfloat16)
    grouped, _ = to_groups(w.double(), 32)
    codes, delta = rtn_codes(grouped, 4)
    kernel = (codes.to(torch.bfloat16) * delta.to(torch.bfloat16)).reshape(8, 64)
    assert torch.equal(delta.to(torch.bfloat16).double(), delta)   # the scale is exact in bf16
    assert torch.equal(rtn_quantize(w, 4, 32), kernel)


def test_float32_results_unchanged_by_the_dtype_rule():
    torch.manual_seed(2)
    w = torch.randn(16, 96)
    grouped, _ = to_groups(w.double(), 32)
    codes, delta = rtn_codes(grouped, 4)
    assert torch.equal(rtn_quantize(w, 4, 32), (codes * delta).reshape(16, 96).float())


def _fp32_checkpoint(tmp_path):
    """A tiny fp32 Llama whose first q_proj row holds one element just above a 4-bit cell boundary."""
    from tiny_memoriser import train_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = train_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         tie_word_embeddings=False))
    with torch.no_grad():
        row = model.model.layers[0].self_attn.q_proj.weight[0]
        row.uniform_(-0.5, 0.5)
        row[0] = 1.0                                   # the row's max: Δ = 1/8 in fp32 and bf16 alike
        row[1] = 2.5 / 8 - 1e-4                        # fp32 code round(2.4992) = 2; in bf16 it rounds to 0.3125 -> 2.5 -> 2 (even)
        row[2] = 1.5 / 8 - 2e-4                        # fp32 code 1; bf16 value 0.1875 = 1.5Δ -> round-half-even 2
    model.save_pretrained(tmp_path, safe_serialization=True)
    tok.save_pretrained(tmp_path)
    return tmp_path, model


def test_codes_changed_by_bf16_rounding_are_reported_and_weights_restored_from_the_file(tmp_path):
    from auditq.checkpoint.load import load_checkpoint

    path, fp32_model = _fp32_checkpoint(tmp_path)
    ckpt = load_checkpoint(path, "base", dtype=torch.bfloat16)
    loaded = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    expected = sum(codes_changed_by_cast(p.detach(), p.detach().to(torch.bfloat16), 4, None)
                   for name, p in fp32_model.named_parameters()
                   if name.endswith("proj.weight") or name == "lm_head.weight")
    assert expected >= 1
    fmt = make_format("rtn4")
    with fmt.apply(ckpt, FormatContext(workdir=tmp_path, role="base")) as lm:
        assert next(lm.model.parameters()).dtype == torch.bfloat16
        assert not torch.equal(ckpt.model.lm_head.weight, loaded["lm_head.weight"])
    details = fmt.details()
    assert details["compute_dtype"] == "bfloat16" and details["restore"] == "safetensors"
    report = details["codes_changed_by_dtype_rounding"]["base"]
    assert report["changed"] == expected and report["stored_dtype"] == "float32"
    after = ckpt.model.state_dict()
    assert all(torch.equal(after[k].view(torch.int16), loaded[k].view(torch.int16)) for k in loaded
               if loaded[k].dtype == torch.bfloat16)


def test_row_blocks_give_the_same_result_as_one_pass(monkeypatch):
    import auditq.formats.rtn as rtn

    torch.manual_seed(3)
    w = torch.randn(300, 70).to(torch.bfloat16)
    whole = rtn_quantize(w, 4, 32)
    monkeypatch.setattr(rtn, "RTN_CHUNK_ELEMENTS", 70 * 7)   # 7 rows at a time, a ragged last block
    assert torch.equal(rtn_quantize(w, 4, 32).view(torch.int16), whole.view(torch.int16))
