"""Shared fixtures: the demo models, built once per test run into .pytest_cache (not the user cache),
so a fresh clone really builds them and later runs on the same checkout reuse them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# The result cache of `auditq check` goes to a fresh directory per test session: tests measure,
# they never reuse results from the user's cache or an earlier run.
os.environ["AUDITQ_CACHE_DIR"] = tempfile.mkdtemp(prefix="auditq-test-cache-")


@pytest.fixture(scope="session")
def one_thread():
    """Torch on one thread for in-process model tests (small-matrix work on a shared 2-core machine is
    slower with more); restored at the end of the session."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def demo_models():
    from auditq.demo.build import build_demo

    torch.set_num_threads(2)
    cache = Path(os.environ.get("AUDITQ_TEST_DEMO_CACHE", REPO / ".pytest_cache" / "auditq-demo"))
    return build_demo(cache_dir=cache)
