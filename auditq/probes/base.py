"""The probe interface: a probe measures one LanguageModel on a suite and keeps every sample's score."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from auditq.backends.base import LanguageModel
from auditq.suite.records import Suite


@dataclass(frozen=True)
class ProbeSettings:
    prefix_tokens: int = 32
    max_new_tokens: int = 64
    answer_tokens: int = 32
    qa_template: str = "Question: {question}\nAnswer:"
    mink_k: float = 0.4
    #: "auditq" (default) or "muse": VerbMem/KnowMem built as MUSE builds them (auditq.probes.muse)
    protocol: str = "auditq"


@dataclass(frozen=True)
class Sample:
    """One probed record: its split, id, named scores, and the text involved (for samples.jsonl)."""

    split: str
    record_id: str
    scores: Mapping[str, float]
    prompt: str | None = None
    generation: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class ProbeOutput:
    """All samples one probe produced for one model in one format."""

    probe: str
    samples: tuple[Sample, ...]
    info: Mapping[str, object] = field(default_factory=dict)

    def values(self, split: str, key: str) -> np.ndarray:
        """Per-sample values of score `key` on `split`, in suite order."""
        return np.asarray([s.scores[key] for s in self.samples if s.split == split], dtype=np.float64)

    def ids(self, split: str) -> list[str]:
        return [s.record_id for s in self.samples if s.split == split]


#: progress callback: (number of items done in this call) -> None
Progress = Callable[[int], None]


class Probe(ABC):
    """A memorisation, membership-inference or utility probe."""

    name: str = ""
    #: the keys of every Sample.scores this probe returns: downstream stages (verdict, cache, reports) read
    #: scores by name, so a probe declares them and tests/probes/test_probe_contract.py holds it to them
    score_names: tuple[str, ...] = ()
    #: the suite splits its samples may come from (a subset of auditq.suite.records.SPLITS)
    splits: tuple[str, ...] = ()

    @abstractmethod
    def run(self, lm: LanguageModel, tokenizer, suite: Suite, settings: ProbeSettings) -> ProbeOutput:
        """Measure `lm` on the suite's records; `tokenizer` is the checkpoint's HF tokenizer."""

    def size(self, suite: Suite) -> int:
        """How many records the probe will touch (for progress bars)."""
        return 0

    def check_suite(self, suite: Suite) -> None:
        """Raise auditq.errors.InputError if the suite lacks records this probe needs (before any heavy work)."""
