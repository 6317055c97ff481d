"""Membership inference on forget (members) vs holdout (non-members) text: MUSE's PrivLeak inputs.

The probe stores raw per-sample features; `membership_scores` turns them into scores with a
single sign convention:

    HIGHER SCORE = MORE LIKELY A MEMBER (i.e. the model has seen / still remembers the text).

    attack   raw feature (per sample)                                membership score
    loss     mean NLL per token                                       -loss
    zlib     loss / len(zlib.compress(text as UTF-8))                 -zlib
    mink     Min-K% Prob: mean of the lowest max(1, floor(N*k))       mink (as is)
             token log-probs
    minkpp   Min-K%++: mean of the lowest max(1, floor(N*k)) of       minkpp (as is)
             (log p - mu) / max(sigma, 1e-6), with mu, sigma the
             mean and std of log p under the model's own next-token
             distribution at that position
    ref      reference attack: target loss vs a reference model's    -(loss_target - loss_reference)
             loss on the same text

With that convention an AUC computed with forget labelled 1 is above 0.5 when the model
separates forget from holdout text. PrivLeak is computed from these scores exactly as MUSE
does (auditq.verdict.stats.muse_auc / privleak: forget labelled 0, holdout 1, score -Min-K%, so
MUSE's AUC is 1 minus this AUC; negative PrivLeak = under-unlearned). (mimir and
detect-pretrain-code report Min-K% as -mean, a loss-like score; here the mean log-prob itself
is stored, so no attack needs negating downstream of this module.)

With the suite setting `mia_qa`, each forget / holdout QA pair is scored as one more text
(`qa_as_text`): the KnowMem prompt followed by the answer.
"""

from __future__ import annotations

import math
import zlib
from typing import Mapping

import numpy as np

from auditq.backends.base import LanguageModel, TokenScores
from auditq.probes.base import Probe, ProbeOutput, ProbeSettings, Sample
from auditq.probes.text import encode_sequences
from auditq.suite.records import Suite

SPLITS = ("forget", "holdout")
#: attacks membership_scores knows, in report order; "ref" needs a reference model's output
ATTACKS = ("loss", "zlib", "mink", "minkpp", "ref")
#: raw per-sample features the probe stores
FEATURES = ("loss", "zlib", "mink", "minkpp", "n_tokens")
#: floor on sigma in Min-K%++ (a near-deterministic position would otherwise divide by ~0)
MIN_STD = 1e-6


def lowest_k_count(n_tokens: int, k: float) -> int:
    """How many tokens Min-K% averages: max(1, floor(N*k)) (mimir returns NaN when floor is 0)."""
    return max(1, int(math.floor(n_tokens * k)))


def mia_features(scores: TokenScores, text: str, k: float) -> dict[str, float]:
    """Raw membership features of one text from its token scores (see the module docstring)."""
    n = scores.n_tokens
    if n == 0:
        raise ValueError("no predicted token to score")
    logp = np.asarray(scores.logprobs, dtype=np.float64)
    loss = float(-logp.mean())
    count = lowest_k_count(n, k)
    z = (logp - np.asarray(scores.mean_logp, dtype=np.float64)) / np.maximum(
        np.asarray(scores.std_logp, dtype=np.float64), MIN_STD)
    return {
        "loss": loss,
        "zlib": loss / len(zlib.compress(text.encode("utf-8"))),
        "mink": float(np.sort(logp)[:count].mean()),
        "minkpp": float(np.sort(z)[:count].mean()),
        "n_tokens": float(n),
    }


def qa_as_text(template: str, question: str, answer: str) -> str:
    """A QA pair as one text: the KnowMem prompt, then the answer (a space between unless the prompt ends in one)."""
    prompt = template.format(question=question)
    return prompt + ("" if prompt.endswith((" ", "\n")) else " ") + answer


def member_records(suite: Suite, split: str, qa_template: str) -> list[tuple[str, str]]:
    """(record id, text) of every text the MIA probe scores on `split`, in suite order.

    Text records always; with the suite setting `mia_qa`, each QA pair as a text too (after
    the text records), so a suite with few long texts but many QA pairs still has enough
    members and non-members for a decisive AUC.
    """
    records = [(r.id, r.text) for r in suite.split(split).texts]
    if suite.settings.mia_qa:
        records += [(r.id, qa_as_text(qa_template, r.question, r.answer)) for r in suite.split(split).qa]
    return records


def membership_from_values(attack: str, values: np.ndarray,
                           reference_loss: np.ndarray | None = None) -> np.ndarray:
    """Raw feature values of one attack -> membership scores, higher = more likely a member.

    `values` is the attack's raw feature ("loss" for the ref attack); `reference_loss` the
    reference model's per-sample loss, aligned with `values` (ref attack only).
    """
    values = np.asarray(values, dtype=np.float64)
    if attack in ("loss", "zlib"):
        return -values
    if attack in ("mink", "minkpp"):
        return values.copy()
    if attack == "ref":
        if reference_loss is None:
            raise ValueError("the ref attack needs the reference model's per-sample losses")
        reference_loss = np.asarray(reference_loss, dtype=np.float64)
        if reference_loss.shape != values.shape:
            raise ValueError(f"ref attack: {values.shape[0]} target vs {reference_loss.shape[0]} reference losses")
        return -(values - reference_loss)
    raise ValueError(f"unknown membership attack {attack!r} (known: {', '.join(ATTACKS)})")


def membership_scores(output: ProbeOutput, split: str, attack: str,
                      reference: ProbeOutput | None = None) -> np.ndarray:
    """Membership scores (higher = member) of one split of an MIA probe output, in suite order.

    For the ref attack, `reference` is the reference model's MIA output on the same suite;
    its losses are matched to this output's samples by record id.
    """
    feature = "loss" if attack == "ref" else attack
    values = output.values(split, feature)
    reference_loss = None
    if attack == "ref":
        if reference is None:
            raise ValueError("the ref attack needs the reference model's MIA output")
        ref_by_id: Mapping[str, float] = {s.record_id: s.scores["loss"] for s in reference.samples
                                          if s.split == split}
        missing = [rid for rid in output.ids(split) if rid not in ref_by_id]
        if missing:
            raise ValueError(f"ref attack: reference output lacks {len(missing)} {split} record(s), "
                             f"e.g. {missing[0]!r}")
        reference_loss = np.asarray([ref_by_id[rid] for rid in output.ids(split)], dtype=np.float64)
    return membership_from_values(attack, values, reference_loss)


class MembershipInference(Probe):
    """Scores every forget and holdout text once and keeps the raw features of each."""

    name = "mia"
    score_names = FEATURES
    splits = SPLITS

    def size(self, suite: Suite) -> int:
        return sum(len(member_records(suite, name, suite.settings.qa_template)) for name in SPLITS)

    def run(self, lm: LanguageModel, tokenizer, suite: Suite, settings: ProbeSettings) -> ProbeOutput:
        if not 0 < settings.mink_k <= 1:
            raise ValueError(f"mink_k must be in (0, 1], got {settings.mink_k}")
        items = [(name, rid, text) for name in SPLITS for rid, text in member_records(suite, name, settings.qa_template)]
        sequences = encode_sequences(tokenizer, [text for _, _, text in items])
        kept = [(item, seq) for item, seq in zip(items, sequences) if len(seq) >= 2]
        scored = lm.score([seq for _, seq in kept]) if kept else []
        samples = tuple(
            Sample(split=split, record_id=rid, scores=mia_features(ts, text, settings.mink_k))
            for ((split, rid, text), _), ts in zip(kept, scored)
        )
        info: dict[str, object] = {"mink_k": settings.mink_k, "members": "forget", "nonmembers": "holdout",
                                   "qa_as_text": bool(suite.settings.mia_qa),
                                   "n_skipped_empty": len(items) - len(kept)}
        for split in SPLITS:
            info[f"n_{split}"] = sum(1 for s in samples if s.split == split)
        return ProbeOutput(self.name, samples, info)
