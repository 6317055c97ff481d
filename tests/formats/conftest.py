"""Fixtures for the GGUF tests: tiny REAL Hugging Face checkpoints built once per session.

The builders live in gguf_helpers.py; see there for sizes. Torch runs on one thread here
(`one_thread` in tests/conftest.py: small-matrix work on a shared 2-core machine is much slower with more).
"""

from __future__ import annotations

import pytest

try:  # tests/formats may or may not become a package
    from .gguf_helpers import PARITY_TEXTS, build_gpt2_checkpoint, build_llama_checkpoint, build_qwen2_checkpoint, load
except ImportError:
    from gguf_helpers import PARITY_TEXTS, build_gpt2_checkpoint, build_llama_checkpoint, build_qwen2_checkpoint, load  # type: ignore


@pytest.fixture(scope="session")
def gguf_llama(tmp_path_factory, one_thread):
    """Llama, hidden 128 / intermediate 384 / 2 layers, 4 query and 2 key-value heads, BOS added."""
    return load(build_llama_checkpoint(tmp_path_factory.mktemp("gguf-llama") / "ckpt"))


@pytest.fixture(scope="session")
def gguf_qwen2(tmp_path_factory, one_thread):
    """Qwen2, hidden 256 / intermediate 512 (K-quant friendly), q/k/v biases, tied output, no BOS."""
    return load(build_qwen2_checkpoint(tmp_path_factory.mktemp("gguf-qwen2") / "ckpt"))


@pytest.fixture(scope="session")
def gguf_gpt2(tmp_path_factory, one_thread):
    return load(build_gpt2_checkpoint(tmp_path_factory.mktemp("gguf-gpt2") / "ckpt"))


@pytest.fixture
def gguf_ctx(tmp_path):
    from auditq.formats.base import FormatContext

    def make(role: str | None = "unlearned", **fields):
        return FormatContext(workdir=tmp_path / "work", seed=0,
                             parity_texts=PARITY_TEXTS, role=role, threads=1, **fields)

    return make
