"""AWQ through GPTQModel's AWQ path (GEMM packing) on the tiny trained Llama. Needs auditq[gptq]."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("gptqmodel") is None:  # not importorskip: importing it here would run its
    pytest.skip("needs gptqmodel (pip install 'auditq[gptq]')", allow_module_level=True)  # import side effects

import torch
from gguf_helpers import load
from quant_helpers import (
    calibration_texts,
    memorised_llama,
    memorised_texts,
    token_logprobs,
)

from auditq.formats import make_format
from auditq.formats.base import FormatContext
from auditq.formats.gptq import QuantizedArtifact
from auditq.formats.gptqmodel.load import dequantized_model, load_quantized

#: AWQ-quantizing the tiny model (the module fixture) took 86 s, the module ~100 s, in the quick lane
#: (2026-12-03, loaded 2-core machine)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def memorised():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load(memorised_llama(), role="base")
    torch.set_num_threads(previous)


def _ctx(workdir, **fields):
    return FormatContext(workdir=workdir, calibration_texts=calibration_texts(), role="base", **fields)


def _score(fmt, checkpoint, ctx):
    with fmt.apply(checkpoint, ctx) as lm:
        return token_logprobs(lm, checkpoint.tokenizer, memorised_texts())


@pytest.fixture(scope="module")
def awq4(memorised, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("awq-work")
    before = {k: v.detach().clone() for k, v in memorised.model.state_dict().items()}
    fmt = make_format("awq4")
    logp = _score(fmt, memorised, _ctx(workdir, keep_quantized=True))
    return {"fmt": fmt, "logp": logp, "before": before, "path": fmt.details()["checkpoint_dir"], "workdir": workdir}


def test_awq4_runs_and_keeps_the_memorised_text(memorised, awq4, tmp_path):
    fp = _score(make_format("fp"), memorised, _ctx(tmp_path))
    assert (awq4["logp"] - fp).abs().max() > 1e-4  # something was quantized
    assert float(-awq4["logp"].mean()) - float(-fp.mean()) < 0.02  # ~0.002 measured; a mis-unpacked weight is >> 1
    after = memorised.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in awq4["before"].items())


def test_loaded_kernel_and_awq_dequantizer_agree(memorised, awq4, tmp_path):
    from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm

    kernel_model, info = load_quantized(awq4["path"], "cpu", tmp_path)
    plain, _ = dequantized_model(awq4["path"], tmp_path)
    assert info["kernel"] == "AwqTorchLinear"
    plain_modules = dict(plain.named_modules())
    n = 0
    for name, module in kernel_model.named_modules():
        if not hasattr(module, "qweight"):
            continue
        kernel_weight = dequantize_gemm(module.qweight, module.qzeros, module.scales.half(), module.bits,
                                        module.group_size).float().t()
        assert torch.equal(kernel_weight, plain_modules[name].weight.detach())  # exact, weight for weight
        grouped = kernel_weight.reshape(kernel_weight.shape[0], -1, module.group_size)
        assert max(grouped[r, g].unique().numel() for r in range(0, grouped.shape[0], 31)
                   for g in range(grouped.shape[1])) <= 16
        n += 1
    assert n == 14
    dequantized = _score(QuantizedArtifact.from_path(awq4["path"], role="base", dequantize=True), memorised,
                         _ctx(tmp_path))
    # the kernel runs its matmuls in float16, the dequantized model in float32
    assert (dequantized - awq4["logp"]).abs().max() < 2e-2


def test_details(awq4):
    info = awq4["fmt"].details()
    assert (info["engine"], info["method"], info["bits"], info["group_size"]) == ("gptqmodel", "awq", 4, 128)
    assert info["zero_point"] is True and info["packing"] == "gemm" and info["quantize_dtype"] == "float16"
    assert info["kernel"] == "AwqTorchLinear" and info["calibration_texts"] == len(calibration_texts())
