"""bitsandbytes NF4 / FP4 / LLM.int8 through transformers, on CPU. Needs the auditq[bnb] extra."""

from __future__ import annotations

import pytest

pytest.importorskip("bitsandbytes")

import torch
from gguf_helpers import PARITY_TEXTS, build_llama_checkpoint, load
from quant_helpers import token_logprobs

from auditq.formats import make_format
from auditq.formats.base import FormatContext


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load(build_llama_checkpoint(tmp_path_factory.mktemp("bnb-llama") / "ckpt"), role="base")
    torch.set_num_threads(previous)


def _ctx(workdir):
    return FormatContext(workdir=workdir, role="base")


@pytest.fixture(scope="module")
def fp_logp(llama, tmp_path_factory):
    with make_format("fp").apply(llama, _ctx(tmp_path_factory.mktemp("fp"))) as lm:
        return token_logprobs(lm, llama.tokenizer, PARITY_TEXTS)


@pytest.mark.parametrize("quant", ["nf4", "fp4"])
def test_4bit_weights_are_blockwise_codebook_values(llama, fp_logp, tmp_path, quant):
    import bitsandbytes.functional as F

    before = {k: v.detach().clone() for k, v in llama.model.state_dict().items()}
    fmt = make_format(f"bnb:{quant}")
    with fmt.apply(llama, _ctx(tmp_path)) as lm:
        model = lm.model
        layer = model.model.layers[0].self_attn.q_proj
        assert type(layer).__name__ == "Linear4bit"
        state = layer.weight.quant_state
        assert state.blocksize == 64 and state.quant_type == quant
        weight = F.dequantize_4bit(layer.weight.data, state).float()
        original = before["model.layers.0.self_attn.q_proj.weight"]
        blocks, absmax = weight.reshape(-1, 64), original.reshape(-1, 64).abs().amax(1, keepdim=True)
        codebook = state.code.float().to(weight.device)
        normalised = blocks / state.absmax.float().reshape(-1, 1)
        nearest = (normalised.unsqueeze(-1) - codebook).abs().amin(-1)
        assert nearest.max() < 1e-3  # every weight is a codebook value times its block's absmax
        assert torch.allclose(state.absmax.float().reshape(-1, 1), absmax, rtol=1e-3)
        assert (weight - original).abs().max() > 0
        assert model.lm_head.weight.dtype == torch.float32  # the head stays in full precision
        logp = token_logprobs(lm, llama.tokenizer, PARITY_TEXTS)
        # still the deployed numerics after inference: no CPU repack to bfloat16 absmax/compute
        assert not getattr(state, "packing_format_for_cpu", False)
        assert state.dtype == torch.float32 and state.absmax.dtype == torch.float32
        assert lm.generate([llama.tokenizer("Marie Curie")["input_ids"]], 4)
    after = llama.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert torch.isfinite(logp).all() and (logp - fp_logp).abs().mean() > 1e-3
    info = fmt.details()
    assert (info["engine"], info["quant_type"], info["bits"], info["blocksize"], info["device"]) == \
        ("bitsandbytes", quant, 4, 64, "cpu")
    assert info["quantized_layers"] == {"Linear4bit": 14} and info["full_precision_linears"] == ["lm_head"]


def test_int8_is_llm_int8_and_closer_than_4bit(llama, fp_logp, tmp_path):
    fmt = make_format("bnb:int8")
    with fmt.apply(llama, _ctx(tmp_path)) as lm:
        layer = lm.model.model.layers[1].mlp.down_proj
        assert type(layer).__name__ == "Linear8bitLt" and layer.weight.dtype == torch.int8
        row_absmax = layer.weight.SCB if getattr(layer.weight, "SCB", None) is not None else layer.state.SCB
        scale = row_absmax.float().reshape(-1, 1) / 127
        original = llama.model.model.layers[1].mlp.down_proj.weight
        assert ((layer.weight.float() * scale - original).abs() <= 0.6 * scale).all()  # row-wise absmax int8 (SCB is fp16)
        int8 = token_logprobs(lm, llama.tokenizer, PARITY_TEXTS)
    with make_format("bnb:nf4").apply(llama, _ctx(tmp_path)) as lm:
        nf4 = token_logprobs(lm, llama.tokenizer, PARITY_TEXTS)
    assert (int8 - fp_logp).abs().mean() < 0.5 * (nf4 - fp_logp).abs().mean()
    info = fmt.details()
    assert info["bits"] == 8 and info["outlier_threshold"] == 6.0 and info["quantized_layers"] == {"Linear8bitLt": 14}


def test_double_quant_option(llama, tmp_path):
    fmt = make_format("bnb:nf4:dq")
    with fmt.apply(llama, _ctx(tmp_path)) as lm:
        assert lm.model.model.layers[0].mlp.up_proj.weight.quant_state.nested
    assert fmt.details()["double_quant"] is True


def test_row_names_the_kernel_of_its_device():
    """On CUDA the row must not claim the CPU path (issue 22: the GPU run reads `kernel` from the row)."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    fmt = make_format("bnb:nf4")
    cpu = fmt._describe(model, "cpu", torch.float32)
    gpu = fmt._describe(model, "cuda:0", torch.bfloat16)
    assert "CPU" in cpu["kernel"] and gpu["kernel"] == "bitsandbytes cuda kernels"
    assert gpu["device"] == "cuda:0" and gpu["compute_dtype"] == "bfloat16"
    assert cpu.get("native_library", "libbitsandbytes_cpu.so").startswith("libbitsandbytes")
