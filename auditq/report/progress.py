"""Rich progress bars on stderr for an audit (auditq.audit.pipeline.Events), shared by `check`, `demo` and
`remediate`'s re-check."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RichEvents:
    """Progress bars on stderr for quantizing and probing."""

    def __init__(self, quiet: bool, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True, disable=quiet)

    def stage(self, description: str, total: int):
        self.progress.start()
        task = self.progress.add_task(description, total=total)
        self._task = task
        return lambda n=1: self.progress.advance(task, n)

    def note(self, message: str) -> None:
        if not self.quiet and hasattr(self, "_task"):
            self.progress.update(self._task, description=message)

    def say(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[dim]{message}[/]", highlight=False)

    def close(self) -> None:
        self.progress.stop()
