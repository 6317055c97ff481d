"""Probe outputs restricted to a suite view (the records a narrowed row scores, e.g. relearn:forget)."""

from __future__ import annotations

from dataclasses import replace

from auditq.probes.base import ProbeOutput
from auditq.suite.records import SPLITS, Suite


def view_ids(view: Suite) -> set[tuple[str, str]]:
    """(split, record id) of every text and QA record in the view."""
    return {(name, r.id) for name in SPLITS for split in (view.split(name),) for r in (*split.texts, *split.qa)}


def restrict_outputs(outputs: dict[str, ProbeOutput], view: Suite) -> dict[str, ProbeOutput]:
    """Each output with only the samples of records in `view`, in their original order."""
    keep = view_ids(view)
    return {name: replace(out, samples=tuple(s for s in out.samples if (s.split, s.record_id) in keep))
            for name, out in outputs.items()}
