"""What the executor hands back per (format, role): the measured outputs, or the one line saying why not.

Shared by the executor (which fills them) and the pipeline (which assembles the report from them); it lives
apart so that neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditq.probes.base import ProbeOutput


@dataclass(frozen=True)
class RunRecord:
    """Everything measured for one model in one format (or why it could not be)."""

    format: str
    role: str
    outputs: dict[str, ProbeOutput]
    error: str | None = None


def one_line(exc: BaseException) -> str:
    """An exception as the one line a report row shows: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
