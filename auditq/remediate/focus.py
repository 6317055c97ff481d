"""Which forget records the remediation still has to unlearn, once membership inference is satisfied.

Why: gradient ascent on the whole forget set lowers the likelihood of EVERY forget text, also of
those already forgotten. On the demo, forget texts reached the retrain model's Min-K% AUC (PrivLeak
≈ 0) at step ~151 while a few QA answers were still given, and by the time the last of them was gone
(step 157) the forget texts looked LESS likely than never-seen text: PrivLeak +7.6, an over-unlearning
(MUSE: a privacy leak of its own) that the re-check could not clear. So once the PrivLeak estimate has
reached its target, the ascent is restricted to the records the gate still finds memorised, for the
metrics whose retention check did not PASS when the focus began: a forget QA pair whose KnowMem
ROUGE-L, or a forget text whose VerbMem ROUGE-L, is above base's holdout mean (the same non-member
floor retention uses). Records already at the floor are no longer pushed below it, and AdamW's
running mean is reset when the selection changes (`auditq.unlearning.loop.unlearn`), else ~10 more steps
follow the whole set's gradient. The stop rule then also waits until no such record is left: a
record only just below the floor at fp can come back at rtn4 (measured on the demo: the gate met at
fp with one answer half given, KnowMem retention at rtn4 INCONCLUSIVE). If the PrivLeak estimate falls
more than `auditq.remediate.stop_rule.FOCUS_HYSTERESIS` points below its target, the full forget set is used
again.
"""

from __future__ import annotations

from collections.abc import Mapping

from auditq.result.model import PASS
from auditq.suite.records import Suite

#: probe measured per metric, and which part of a split's training corpus it covers
_PROBE_PART = {"verbmem": "texts", "knowmem": "qa"}


def training_record_ids(suite: Suite, split: str = "forget") -> list[tuple[str, str]]:
    """(part, record id) of every text `auditq.remediate.plan.training_texts` builds, in the same order."""
    part = suite.split(split)
    return [("texts", r.id) for r in part.texts] + [("qa", r.id) for r in part.qa]


def unmet(checks: Mapping) -> set[str]:
    """Metrics whose fp forget-retention check (`ForgetGate.check`) is not met yet."""
    return {metric for metric, check in checks.items()
            if not (check.verdict == PASS or "nothing to retain" in (check.message or ""))}


def still_memorised(current_outputs: Mapping, base_outputs: Mapping, metrics) -> dict[str, set[str]]:
    """{part: record ids} scoring above base's holdout floor, for each of `metrics` ('knowmem', 'verbmem').

    `current_outputs` / `base_outputs`: {'knowmem': ProbeOutput, 'verbmem': ProbeOutput} at fp (a
    `Measurement.outputs`).
    """
    remaining: dict[str, set[str]] = {"texts": set(), "qa": set()}
    for metric in sorted(metrics):
        part = _PROBE_PART[metric]
        current, base = current_outputs.get(metric), base_outputs.get(metric)
        if current is None or base is None:
            continue
        holdout = base.values("holdout", "rougeL_f1")
        floor = float(holdout.mean()) if holdout.size else 0.0
        scores = current.values("forget", "rougeL_f1")
        remaining[part].update(rid for rid, score in zip(current.ids("forget"), scores) if score > floor)
    return remaining


def focus_indices(record_ids: list[tuple[str, str]], remaining: Mapping[str, set[str]]) -> list[int]:
    """Indices into the training corpus of the records in `remaining` (empty: none left)."""
    return [i for i, (part, rid) in enumerate(record_ids) if rid in remaining.get(part, ())]
