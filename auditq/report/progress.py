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


class LabelledLines:
    """Progress as plain lines on stderr, each prefixed with a label: for audits running at once (a sweep's
    candidates on Ray), whose progress bars would overwrite each other. A line per note and per tenth done."""

    def __init__(self, label: str, quiet: bool, console: Console) -> None:
        self.label, self.quiet, self.console = label, quiet, console
        self._total, self._done, self._shown = 0, 0, -1

    def _line(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[{self.label}] {message}", highlight=False, markup=False)

    def stage(self, description: str, total: int):
        self._total, self._done = max(1, total), 0
        self._line(description)
        return self._advance

    def _advance(self, n: int = 1) -> None:
        self._done += n
        tenth = min(10, 10 * self._done // self._total)
        if tenth > self._shown:
            self._shown = tenth
            self._line(f"{self._done}/{self._total} probe item(s)")

    def note(self, message: str) -> None:
        self._line(message)

    def say(self, message: str) -> None:
        self._line(message)

    def close(self) -> None:
        return None
