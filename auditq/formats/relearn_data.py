"""What a relearning row trains on, and which part of the suite it may still score.

- ``retain``  the retain split: benign, related data (Hu et al., arXiv 2406.13356);
- ``generic`` the suite's calibration text: unrelated data (Łucki et al., arXiv 2409.18025);
- ``forget``  a fixed seeded half of the forget records (Deeb & Roger, arXiv 2410.08827): the
  row's forget probes then score only the OTHER half, for every model in the row;
- ``forget_all`` every forget record, scored on the same records (only through relearn:uds, the
  Unlearning Depth Score's protocol; it needs --retrain, whose own relearning is the bar).

Records are trained as a user would fine-tune on them: text records as they are, QA records as
the suite's QA prompt followed by " answer" (the form the probes ask in).

The forget half: a seeded permutation of the forget TEXT records, floor(n/2) relearned. A QA
record belongs to the relearned half when its answer occurs (case-insensitive, whole words) in
a relearned text, else it is scored; so no scored question is answered by the relearning data.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

from auditq.suite.records import QARecord, Split, Suite, TextRecord

SOURCES = ("retain", "generic", "forget")


@dataclass(frozen=True)
class ForgetHalves:
    relearned_texts: tuple[TextRecord, ...]
    relearned_qa: tuple[QARecord, ...]
    scored: Split


def _mentions(text: str, answer: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(answer.strip().lower()) + r"(?!\w)", text.lower()) is not None


def forget_halves(suite: Suite, seed: int) -> ForgetHalves:
    texts = suite.forget.texts
    order = list(range(len(texts)))
    random.Random(f"auditq-relearn-forget:{seed}").shuffle(order)
    chosen = set(order[: len(texts) // 2])
    relearned = tuple(t for i, t in enumerate(texts) if i in chosen)
    kept = tuple(t for i, t in enumerate(texts) if i not in chosen)
    known = [t.text for t in relearned]
    qa_relearned = tuple(q for q in suite.forget.qa if any(_mentions(t, q.answer) for t in known))
    qa_kept = tuple(q for q in suite.forget.qa if q not in qa_relearned)
    return ForgetHalves(relearned, qa_relearned, Split("forget", kept, qa_kept))


def qa_training_text(suite: Suite, record: QARecord) -> str:
    return suite.settings.qa_template.format(question=record.question) + " " + record.answer


def training_texts(source: str, suite: Suite, calibration: tuple[str, ...], seed: int) -> tuple[str, ...]:
    """The relearning data for `source`, in suite order."""
    if source == "retain":
        split = suite.retain
        return tuple(r.text for r in split.texts) + tuple(qa_training_text(suite, q) for q in split.qa)
    if source == "generic":
        return tuple(t for t in calibration if t.strip())
    if source == "forget_all":  # relearn:uds: every forget record (UDS relearns on all of forget10)
        split = suite.forget
        return tuple(r.text for r in split.texts) + tuple(qa_training_text(suite, q) for q in split.qa)
    if source == "forget":
        halves = forget_halves(suite, seed)
        return tuple(r.text for r in halves.relearned_texts) + tuple(qa_training_text(suite, q) for q in halves.relearned_qa)
    raise ValueError(f"unknown relearning data {source!r} (known: {', '.join(SOURCES)})")


def scored_view(suite: Suite, seed: int) -> Suite:
    """The suite with the relearned forget half removed (relearn:forget rows score only the rest)."""
    halves = forget_halves(suite, seed)
    if not halves.relearned_texts:
        return suite
    return replace(suite, forget=halves.scored)


def view_note(suite: Suite, seed: int) -> dict[str, object]:
    halves = forget_halves(suite, seed)
    return {
        "forget_scored": "only the forget half NOT relearned, for every model in this row",
        "forget_texts_scored": len(halves.scored.texts), "forget_texts_relearned": len(halves.relearned_texts),
        "forget_qa_scored": len(halves.scored.qa), "forget_qa_relearned": len(halves.relearned_qa),
        "relearned_ids": [r.id for r in halves.relearned_texts] + [q.id for q in halves.relearned_qa],
    }
