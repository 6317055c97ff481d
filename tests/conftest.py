"""Shared fixtures: the demo models, built once per test run into .pytest_cache (not the user cache),
so a fresh clone really builds them and later runs on the same checkout reuse them; and `tiny`, the
memorising tiny model the probe and backend tests share (tests/tiny_memoriser.py)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny_memoriser import MEMORISED, QA_ANSWER, QA_QUESTION, UNSEEN, train_model, train_tokenizer

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


@dataclass(frozen=True)
class Tiny:
    """A tiny REAL fixture for the probes and backends: a byte-level BPE tokenizer and a 2-layer Llama that
    has memorised a few short texts (and one QA document), built in a few seconds, once per session.

    Nothing is mocked: the probes run through TorchCausalLM, transformers' generate, and the
    tokenizer exactly as they would on a real checkpoint."""

    tokenizer: object
    model: object
    final_loss: float
    memorised: tuple[str, ...] = MEMORISED
    unseen: tuple[str, ...] = UNSEEN
    qa_question: str = QA_QUESTION
    qa_answer: str = QA_ANSWER

    @property
    def bos(self) -> int:
        return int(self.tokenizer.bos_token_id)

    def lm(self, batch_size: int = 16):
        from auditq.backends.torch_lm import TorchCausalLM

        return TorchCausalLM(self.model, pad_token_id=self.tokenizer.pad_token_id,
                             eos_token_id=self.tokenizer.eos_token_id, batch_size=batch_size,
                             description="tiny")


@pytest.fixture(scope="session")
def tiny() -> Tiny:
    torch.set_num_threads(1)
    tokenizer = train_tokenizer()
    model, loss = train_model(tokenizer)
    return Tiny(tokenizer, model, loss)


def _make_suite(forget_texts=(), forget_qa=(), retain_texts=(), retain_qa=(), holdout_texts=()):
    """A Suite built in memory (probes only read its splits)."""
    from auditq.suite.records import QARecord, Split, Suite, TextRecord

    def texts(prefix, items):
        return tuple(TextRecord(f"{prefix}-{i}", t) for i, t in enumerate(items))

    def qa(prefix, items):
        return tuple(QARecord(f"{prefix}-qa-{i}", q, a) for i, (q, a) in enumerate(items))

    return Suite(
        path=Path("."), name="tiny", description="",
        forget=Split("forget", texts("forget", forget_texts), qa("forget", forget_qa)),
        retain=Split("retain", texts("retain", retain_texts), qa("retain", retain_qa)),
        holdout=Split("holdout", texts("holdout", holdout_texts), ()),
    )


@pytest.fixture(scope="session")
def make_suite():
    """Factory for in-memory suites: make_suite(forget_texts=..., forget_qa=[(q, a)], ...)."""
    return _make_suite


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


def pytest_unconfigure(config):
    """End the process once pytest has reported when a library left non-daemon threads behind.

    gptqmodel 7.6.0 keeps worker threads alive after in-process GPTQ/AWQ runs (the conformance matrix), and
    the interpreter then waits for them forever after the summary. The audit CLI runs engines in its own
    process and exits normally; this only keeps a finished test run from hanging.
    """
    import sys
    import threading

    lingering = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if lingering and _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One real local Ray cluster for the whole session (startup is ~10 s on a loaded 2-core machine), always
    shut down. Its workers inherit AUDITQ_TEST_RAY_FAULT: the path of a marker file a test writes to make a
    worker SIGKILL itself (auditq.audit.executors.worker); no file, no fault."""
    ray = pytest.importorskip("ray")
    from types import SimpleNamespace

    marker = tmp_path_factory.mktemp("ray-fault") / "marker"
    os.environ["AUDITQ_TEST_RAY_FAULT"] = str(marker)
    # a test cluster without Ray's token authentication, so a client in a clean environment (the console script
    # in a subprocess) connects with nothing but the address
    os.environ["RAY_AUTH_MODE"] = "disabled"
    from auditq.audit.executors.onray import start_local_cluster

    start_local_cluster(num_cpus=2)  # on 127.0.0.1, as `--ray-address local` starts one
    try:
        yield SimpleNamespace(address=ray.get_runtime_context().gcs_address, fault=marker)
    finally:
        ray.shutdown()
        os.environ.pop("AUDITQ_TEST_RAY_FAULT", None)
        os.environ.pop("RAY_AUTH_MODE", None)
