"""A tiny REAL fixture for the probes: a byte-level BPE tokenizer and a 2-layer Llama that has
memorised a few short texts (and one QA document), built in a few seconds, once per session.

Nothing is mocked: the probes run through TorchCausalLM, transformers' generate, and the
tokenizer exactly as they would on a real checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny_memoriser import MEMORISED, QA_ANSWER, QA_QUESTION, UNSEEN, train_model, train_tokenizer

from auditq.backends.torch_lm import TorchCausalLM
from auditq.suite.records import QARecord, Split, Suite, TextRecord


@dataclass(frozen=True)
class Tiny:
    """The trained tokenizer and model, plus the corpus they were built from."""

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

    def lm(self, batch_size: int = 16) -> TorchCausalLM:
        return TorchCausalLM(self.model, pad_token_id=self.tokenizer.pad_token_id,
                             eos_token_id=self.tokenizer.eos_token_id, batch_size=batch_size,
                             description="tiny")


@pytest.fixture(scope="session")
def tiny() -> Tiny:
    torch.set_num_threads(1)
    tokenizer = train_tokenizer()
    model, loss = train_model(tokenizer)
    return Tiny(tokenizer, model, loss)


def _make_suite(forget_texts=(), forget_qa=(), retain_texts=(), retain_qa=(), holdout_texts=()) -> Suite:
    """A Suite built in memory (probes only read its splits)."""
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
