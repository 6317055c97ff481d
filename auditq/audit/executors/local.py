"""The local executor: this process, one checkpoint resident at a time (auditq.audit.executor does the work)."""

from __future__ import annotations

from typing import Any

from auditq.audit.executors import Executed


class LocalExecutor:
    """Runs the plan in this process; nothing to connect to or release."""

    name = "local"

    def __init__(self, options: Any = None) -> None:
        self.options = options

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def slots(self) -> int:
        """Audits this executor runs at once: one (one machine, one resident checkpoint)."""
        return 1

    @classmethod
    def cancel_outstanding(cls) -> None:
        """Nothing runs elsewhere: Ctrl-C unwinds this process's own work."""

    @classmethod
    def resume(cls) -> None:
        """Nothing was stopped."""

    def execute(self, plan, checkpoints, ctx, suite, settings, *, timer, advance, events, cache=None,
                lookup=None) -> Executed:
        from auditq.audit.executor import execute

        runs = execute(plan, checkpoints, ctx, suite, settings, timer=timer, advance=advance, events=events,
                       cache=cache, lookup=lookup)
        return Executed(runs=runs)
