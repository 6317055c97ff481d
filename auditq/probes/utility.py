"""RetainLikelihood: how well the model still predicts retain-set text (a cheap utility signal)."""

from __future__ import annotations

import math

from auditq.backends.base import LanguageModel
from auditq.probes.base import Probe, ProbeOutput, ProbeSettings, Sample
from auditq.probes.text import encode_sequences
from auditq.suite.records import Suite


def perplexity(mean_nll: float) -> float:
    """exp(mean NLL), inf instead of an OverflowError for a model that has lost the text entirely."""
    if math.isnan(mean_nll):
        return float("nan")
    return math.exp(mean_nll) if mean_nll < 700 else float("inf")


class RetainLikelihood(Probe):
    """Per-record mean NLL and token count of every retain text; corpus NLL and perplexity in info.

    The corpus NLL is token-weighted (total NLL / total tokens), so long records count for
    what they contain, as a perplexity should. Records with no predicted token (possible only
    with a tokenizer that adds no BOS and a one-token text) are skipped and counted.
    """

    name = "utility"
    score_names = ("nll", "n_tokens")
    splits = ("retain",)

    def size(self, suite: Suite) -> int:
        return len(suite.retain.texts)

    def run(self, lm: LanguageModel, tokenizer, suite: Suite, settings: ProbeSettings) -> ProbeOutput:
        records = suite.retain.texts
        sequences = encode_sequences(tokenizer, [r.text for r in records])
        kept = [(record, seq) for record, seq in zip(records, sequences) if len(seq) >= 2]
        scored = lm.score_logprobs([seq for _, seq in kept]) if kept else []  # NLL only
        samples = tuple(
            Sample(split="retain", record_id=record.id, scores={"nll": ts.nll, "n_tokens": float(ts.n_tokens)})
            for (record, _), ts in zip(kept, scored)
        )
        total_tokens = sum(ts.n_tokens for ts in scored)
        total_nll = sum(-float(ts.logprobs.sum()) for ts in scored)
        mean_nll = total_nll / total_tokens if total_tokens else float("nan")
        info = {
            "n_records": len(records),
            "n_scored": len(samples),
            "n_skipped_empty": len(records) - len(kept),
            "n_tokens": total_tokens,
            "mean_nll": mean_nll,
            "perplexity": perplexity(mean_nll),
        }
        return ProbeOutput(self.name, samples, info)
