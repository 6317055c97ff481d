"""Swap a complete staged directory in for a target directory: the one way auditq publishes what it wrote
(the reports of `check`/`demo` into --out: auditq.report; the remediated checkpoint: auditq.remediate.output).

The swap is two renames on one filesystem (target aside, staging in) and, only after both succeeded, the
removal of the old directory. Whatever happens, the target path holds either the complete old directory or
the complete new one:

- a failed rename (OSError: a full disk, a permission change) or any other exception between the two renames
  puts the old directory back (``except BaseException``: whatever interrupted the second rename, it did not
  happen) and re-raises; the caller removes its staging dir;
- Ctrl-C is held back over the swap (auditq.report.dirswap.HeldSigint: the SIGINT handler only records the press,
  in whichever thread the OS delivers it). A press during the renames undoes them — the target is as it was,
  the staging dir back for the caller to remove — and is then handed to the previous handler (auditq.entry's
  raises: exit 130, "nothing was written"). A press while the old copy is deleted comes after the new
  directory is complete in place; it is delivered once the deletion is done (still exit 130). So no
  KeyboardInterrupt can land between "old moved aside" and "new moved in", and none leaves a half-deleted
  ``.<name>.old-*`` sibling. Off the main thread (no handler can be set there) the renames run as they are.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Optional


class HeldSigint:
    """From construction until `restore`, Ctrl-C only records the press; `deliver` hands it to the previous
    handler (auditq.entry's raises). Python runs signal handlers in the main thread only, so a press is
    recorded whichever thread the OS interrupts; off the main thread nothing is held (no handler can be set)."""

    def __init__(self) -> None:
        self._presses: list[object] = []
        self._previous = None
        self._active = threading.current_thread() is threading.main_thread()
        if self._active:
            self._previous = signal.signal(signal.SIGINT, lambda signum, frame: self._presses.append(frame))

    @property
    def pressed(self) -> bool:
        return bool(self._presses)

    def restore(self) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            self._active = False

    def deliver(self) -> None:
        if not self._presses:
            return
        frame, self._presses = self._presses[0], []
        if callable(self._previous):
            self._previous(signal.SIGINT, frame)
        elif self._previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


def _renames(staging: Path, target: Path) -> Optional[Path]:
    """Staging onto target; the old target's new name (None when there was none). Old target back on failure."""
    if not target.exists():
        os.replace(staging, target)
        return None
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(aside)  # a fresh unused name beside the target (same filesystem)
    os.replace(target, aside)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(aside, target)
        raise
    return aside


def swap_in(staging: Path, target: Path) -> Path:
    """Rename the complete `staging` dir onto `target`, replacing an existing `target` as a whole; the target."""
    staging, target = Path(staging), Path(target).expanduser().resolve()
    held = HeldSigint()
    try:
        aside = _renames(staging, target)
        if held.pressed:  # Ctrl-C during the renames: undo them, so the interrupted run leaves the target as it was
            os.replace(target, staging)
            if aside is not None:
                os.replace(aside, target)
        elif aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        held.restore()
        held.deliver()  # a held Ctrl-C wins over the error: exit 130 (the target is as it was)
        raise
    held.restore()
    held.deliver()
    return target
