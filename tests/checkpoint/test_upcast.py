"""Loading a bf16/fp16 checkpoint in float32 on the CPU goes through auditq.checkpoint.upcast.

The model must be exactly what `from_pretrained(dtype=float32)` builds (every parameter and
buffer, bit for bit, and config.dtype), for each architecture family the tests build; a
checkpoint with mixed float dtypes is loaded directly.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from formats.gguf_helpers import build_gpt2_checkpoint, build_llama_checkpoint, build_qwen2_checkpoint  # noqa: E402

from auditq.checkpoint import upcast as load_upcast  # noqa: E402
from auditq.checkpoint.load import load_checkpoint  # noqa: E402
from auditq.checkpoint.upcast import streamed_load_dtype  # noqa: E402

BUILDERS = {"llama": lambda out: build_llama_checkpoint(out, hidden=64, intermediate=128),
            "llama-tied": lambda out: build_llama_checkpoint(out, hidden=64, intermediate=128, tied=True),
            "qwen2": lambda out: build_qwen2_checkpoint(out, hidden=64, intermediate=128),
            "gpt2": lambda out: build_gpt2_checkpoint(out, hidden=64)}


def _stored_as(source: Path, out: Path, dtype: torch.dtype) -> Path:
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    model.save_pretrained(out, safe_serialization=True)
    for extra in source.iterdir():
        if extra.name.startswith("tokenizer") or extra.name == "special_tokens_map.json":
            shutil.copy(extra, out / extra.name)
    return out


def _assert_same(ours, reference):
    assert dict(ours.named_parameters()).keys() == dict(reference.named_parameters()).keys()
    for (name, a), (_, b) in zip(ours.named_parameters(), reference.named_parameters()):
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b), name
    for (name, a), (_, b) in zip(ours.named_buffers(), reference.named_buffers()):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert ours.config.dtype == reference.config.dtype


@pytest.mark.parametrize("stored", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_upcast_load_equals_a_direct_float32_load(tmp_path, monkeypatch, arch, stored):
    torch.set_num_threads(1)
    path = _stored_as(BUILDERS[arch](tmp_path / "fp32"), tmp_path / "narrow", stored)
    assert streamed_load_dtype(path, torch.float32, "cpu", None) == stored
    calls = []
    real = load_upcast.upcast_from_files
    monkeypatch.setattr(load_upcast, "upcast_from_files", lambda *a: calls.append(a) or real(*a))
    ours = load_checkpoint(path, "base", dtype=torch.float32).model
    assert calls, "the upcast path was not taken"
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    _assert_same(ours, reference)
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, reference(ids).logits)
    # parameters own their memory: none is still a view of the file's mapping
    assert all(p.untyped_storage().nbytes() == p.numel() * 4 for p in ours.parameters())


def test_only_narrow_uniform_checkpoints_take_the_upcast_path(tmp_path):
    from safetensors.torch import save_file

    uniform = tmp_path / "uniform"
    uniform.mkdir()
    save_file({"a": torch.zeros(2, dtype=torch.bfloat16), "n": torch.zeros(2, dtype=torch.int64)},
              str(uniform / "model.safetensors"))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    save_file({"a": torch.zeros(2, dtype=torch.bfloat16), "norm": torch.zeros(2)}, str(mixed / "model.safetensors"))
    assert streamed_load_dtype(uniform, torch.float32, "cpu", None) == torch.bfloat16
    assert streamed_load_dtype(mixed, torch.float32, "cpu", None) is None  # its float32 norm would be narrowed
    assert streamed_load_dtype(uniform, torch.bfloat16, "cpu", None) is None  # nothing to widen
    assert streamed_load_dtype(uniform, torch.float32, "cuda:0", None) is None
    assert streamed_load_dtype(uniform, torch.float32, "cpu", "auto") is None
