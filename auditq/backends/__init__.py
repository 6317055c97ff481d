"""Scoring backends: every format yields a LanguageModel that probes talk to."""

from auditq.backends.base import LanguageModel, TokenScores

__all__ = ["LanguageModel", "TokenScores"]
