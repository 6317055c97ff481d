"""--device / --dtype / --device-map parsing, the auto rules, and the memory refusal (exit 2, naming a flag)."""

from __future__ import annotations

import pytest
import torch

from auditq.checkpoint.placement import (
    GIB,
    ComputeRequest,
    needed_bytes,
    parameter_count,
    parse_device,
    parse_device_map,
    parse_dtype,
    resolve,
    stored_dtype,
)
from auditq.errors import InputError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from formats.gguf_helpers import build_llama_checkpoint

    return build_llama_checkpoint(tmp_path_factory.mktemp("c") / "m", hidden=32, intermediate=64, seed=0)


def test_parsing():
    assert parse_device("auto") == "auto" and parse_device("CUDA:1") == "cuda:1" and parse_device("cpu") == "cpu"
    assert parse_dtype("bf16") == "bfloat16" and parse_dtype("float16") == "float16" and parse_dtype("auto") == "auto"
    assert parse_device_map(None) is None and parse_device_map("auto") == "auto"
    for bad in ("tpu", "cuda:x", "gpu0"):
        with pytest.raises(InputError):
            parse_device(bad)
    for bad in ("int8", "float64"):
        with pytest.raises(InputError):
            parse_dtype(bad)
    with pytest.raises(InputError):
        parse_device_map("balanced")


def test_headers_give_parameter_count_and_dtype(ckpt):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ckpt)
    assert parameter_count(ckpt) == sum(p.numel() for p in model.parameters())
    assert stored_dtype(ckpt) == torch.float32


def test_auto_on_cpu_is_float32_when_it_fits(ckpt):
    placement = resolve(ComputeRequest(device="cpu"), ckpt, available=64 * GIB)
    assert placement.device == "cpu" and placement.dtype == torch.float32 and placement.note is None
    assert "needs ~" in placement.estimate_line() and "64.0 GiB available" in placement.estimate_line()


def test_auto_on_cpu_falls_back_to_bf16_in_one_line(ckpt):
    n = parameter_count(ckpt)
    between = (needed_bytes(n, torch.float32) + needed_bytes(n, torch.bfloat16)) // 2
    placement = resolve(ComputeRequest(device="cpu"), ckpt, available=between)
    assert placement.dtype == torch.bfloat16
    assert placement.note and "\n" not in placement.note and "bfloat16" in placement.note


def test_refusal_names_the_flag_that_helps(ckpt):
    n = parameter_count(ckpt)
    with pytest.raises(InputError, match="--dtype bfloat16"):
        resolve(ComputeRequest(device="cpu", dtype="float32"), ckpt, available=needed_bytes(n, torch.float32) - 1)
    with pytest.raises(InputError, match="more memory"):
        resolve(ComputeRequest(device="cpu"), ckpt, available=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusals")
def test_cuda_requests_without_a_gpu_are_refused(ckpt):
    with pytest.raises(InputError, match="no CUDA device"):
        resolve(ComputeRequest(device="cuda"), ckpt, available=64 * GIB)
    with pytest.raises(InputError, match="device-map"):
        resolve(ComputeRequest(device="cpu", device_map="auto"), ckpt, available=64 * GIB)
    assert resolve(ComputeRequest(), ckpt, available=64 * GIB).device == "cpu"   # auto without CUDA


def test_the_cpu_estimate_counts_the_processes_own_imports():
    """On the CPU the audit process's imports share the memory the model needs; on a GPU they do not."""
    from auditq.checkpoint.placement import CPU_IMPORT_BYTES

    n = 1_000_000
    assert needed_bytes(n, torch.float32, "cpu") - needed_bytes(n, torch.float32, "cuda:0") == CPU_IMPORT_BYTES
    assert needed_bytes(n, torch.float32, "cpu") > needed_bytes(n, torch.bfloat16, "cpu")
