"""Refuse a suite whose holdout split repeats its forget split (a degenerate audit, issue 24 class 5).

Holdout records are the non-members: text the model never trained on. MIA / PrivLeak compares the
forget texts (members) with them, and forget retention counts BASE's holdout score as the floor. A
holdout record that is also a forget record is a member labelled non-member: with identical splits
the two score distributions are the same, the Min-K% AUC is 0.5 for every model, PrivLeak is 0 and
PASSes whatever the unlearning did, and retention divides by zero. No verdict on such a suite is a
measurement, so it is refused (exit 2, one line) before any work rather than reported: the fix is in
the input. Records are compared after folding case and whitespace (a copy with other line breaks or
capitals is still the same text); near-duplicates (one word changed) are not detected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditq.errors import InputError


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _keys(split: Any) -> dict[str, str]:
    """normalised text -> record id, for text records and QA pairs (question + answer, as MIA scores them)."""
    keys = {_norm(r.text): r.id for r in split.texts}
    keys.update({"qa\0" + _norm(r.question) + "\0" + _norm(r.answer): r.id for r in split.qa})
    return keys


def check_forget_holdout_disjoint(directory: Path, forget: Any, holdout: Any) -> None:
    """InputError naming the count and the first shared record when any holdout record repeats a forget one."""
    members = _keys(forget)
    shared = [(members[key], record_id) for key, record_id in _keys(holdout).items() if key in members]
    if not shared:
        return
    total = len(holdout.texts) + len(holdout.qa)
    forget_id, holdout_id = shared[0]
    raise InputError(f"{directory}: {len(shared)} of {total} holdout record(s) repeat forget records (first: holdout "
                     f"{holdout_id!r} = forget {forget_id!r}); holdout must be text the model never saw, or MIA/PrivLeak "
                     "compares the forget set with itself and retention has no floor: remove them from holdout.jsonl")
