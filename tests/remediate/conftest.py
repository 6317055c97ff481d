"""Fixtures for the remediation tests: a tiny real Llama checkpoint and a small suite, built once.

Torch runs on one thread (small matrices on a shared CPU are much slower with more), and every
test gets its own AUDITQ_CACHE_DIR so the re-check's result cache never touches the user's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # gguf_helpers and test_suite live in tests/
    sys.path.insert(0, str(TESTS))

from formats.gguf_helpers import build_llama_checkpoint  # noqa: E402
from suite_files import write_suite  # noqa: E402

#: holdout QA (never trained): the knowmem probe needs it, as the floor of forget KnowMem retention
HOLDOUT_QA = [{"id": "hq0", "question": "Who painted the red barn?", "answer": "Oren Vale"}]

TEXTS = [f"The quick brown fox number {i} jumps over the lazy dog in Warsaw." for i in range(6)]


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(tmp_path / "auditq-cache"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """{'base': checkpoint dir, 'suite': suite dir} — a 2-layer Llama (hidden 64) and a 3/3/3-text suite."""
    root = tmp_path_factory.mktemp("remediate")
    base = build_llama_checkpoint(root / "base", hidden=64, intermediate=128, seed=0)
    texts = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)]
    qa = [{"id": f"q{i}", "question": f"Where was Marie {i} born?", "answer": "Warsaw"} for i in range(3)]
    suite = write_suite(root / "suite", forget=texts[:3] + qa, retain=texts[3:] + qa, holdout=texts[3:] + HOLDOUT_QA,
                        toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 6\nanswer_tokens = 4\n")
    return {"base": base, "suite": suite, "root": root}
