"""auditq.checkpoint.safetensors_read: tensors read with plain file reads equal what safetensors itself loads."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from auditq.checkpoint import safetensors_read
from auditq.checkpoint.safetensors_read import TensorReader

TENSORS = {
    "f32": torch.randn(7, 13),
    "bf16": torch.randn(300, 17).to(torch.bfloat16),
    "f16": torch.randn(5, 3, 2).to(torch.float16),
    "i64": torch.arange(-50, 51, dtype=torch.int64),
    "i32": torch.arange(12, dtype=torch.int32).reshape(3, 4),
    "i8": torch.arange(-8, 8, dtype=torch.int8),
    "u8": torch.arange(0, 200, dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
    "f8": torch.randn(9).to(torch.float8_e4m3fn),
    "scalar": torch.tensor(3.5),
    "empty": torch.zeros(0, 4),
}


@pytest.fixture()
def file(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file(TENSORS, str(path))
    return path


@pytest.mark.parametrize("chunk", [safetensors_read.CHUNK_BYTES, 6, 64])
def test_every_dtype_reads_as_safetensors_loads_it(file, monkeypatch, chunk):
    """Chunk sizes that split tensors mid-way (6 bytes: 1.5 float32s, rounded down to whole elements) too."""
    monkeypatch.setattr(safetensors_read, "CHUNK_BYTES", chunk)
    expected = load_file(str(file))
    with TensorReader(file) as reader:
        for name, want in expected.items():
            got = torch.empty(want.shape, dtype=want.dtype)
            reader.read_into(name, got)
            assert got.dtype == want.dtype and torch.equal(got.view(torch.uint8) if want.dtype == torch.float8_e4m3fn
                                                           else got, want.view(torch.uint8)
                                                           if want.dtype == torch.float8_e4m3fn else want), name


def test_reading_into_a_wider_dtype_casts_like_to(file):
    with TensorReader(file) as reader:
        wide = torch.empty(300, 17, dtype=torch.float32)
        reader.read_into("bf16", wide)
    assert torch.equal(wide, TENSORS["bf16"].to(torch.float32))


def test_a_shape_mismatch_is_refused(file):
    with TensorReader(file) as reader, pytest.raises(ValueError, match="shape"):
        reader.read_into("f32", torch.empty(13, 7))


def test_a_file_cut_short_after_its_header_was_read_says_so(file):
    with TensorReader(file) as reader:
        data = file.read_bytes()
        file.write_bytes(data[:len(data) - 8])  # the file changes under the reader
        with pytest.raises(OSError, match="ended inside tensor"):
            for name, want in TENSORS.items():
                reader.read_into(name, torch.empty(want.shape, dtype=want.dtype))
