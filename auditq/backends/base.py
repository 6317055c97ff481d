"""The one interface every quantization format hands to the probes.

Probes tokenize with the checkpoint's Hugging Face tokenizer and talk to the
model in token ids only, so a torch model and a llama.cpp GGUF file are
measured by exactly the same probe code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class TokenScores:
    """Per-token statistics of one sequence under a model.

    `logprobs[t]` is log p(x_{t+1} | x_{<=t}); `mean_logp[t]` and `std_logp[t]`
    are the mean and standard deviation of log p(z) for z drawn from the model's
    own next-token distribution at that position (Min-K%++ needs them).
    """

    logprobs: np.ndarray
    mean_logp: np.ndarray
    std_logp: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.logprobs.shape[0])

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood per predicted token."""
        return float(-self.logprobs.mean()) if self.n_tokens else float("nan")


class LanguageModel(ABC):
    """A scorer and greedy generator over token ids."""

    #: a short human-readable description, e.g. "torch float32 (rtn4:g128)"
    description: str = ""

    @abstractmethod
    def score(self, sequences: list[list[int]]) -> list[TokenScores]:
        """Score each sequence (which includes any BOS token) token by token."""

    def score_logprobs(self, sequences: list[list[int]]) -> list[TokenScores]:
        """Like score(), but only `logprobs` is needed (mean/std may be NaN): cheaper at real vocab sizes."""
        return self.score(sequences)

    @abstractmethod
    def generate(self, prompts: list[list[int]], max_new_tokens: int,
                 stop_token_ids: Iterable[int] = ()) -> list[list[int]]:
        """Greedy continuation of each prompt; returns only the new token ids, EOS excluded.

        A row stops at EOS, or right after emitting one of `stop_token_ids` (which is kept), so a
        probe that reads only the first line need not pay for the rest of the answer.
        """

    def close(self) -> None:
        """Release resources (files, native handles)."""
