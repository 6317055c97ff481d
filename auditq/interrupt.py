"""Ctrl-C state shared by the console script (auditq.entry), the CLI and the executor: exit 130 at any moment.

`auditq.cli` imports typer and rich, and the commands import torch and transformers (seconds on a
loaded machine). A KeyboardInterrupt raised inside import machinery can surface as anything — a
RecursionError, a half-imported numpy, an ImportError — so the handler also records that Ctrl-C was
pressed, and the entry point exits 130 whenever that flag is set, whatever exception arrives (or none:
a press swallowed on the way, "Exception ignored in ...", still ends the run with 130). A second Ctrl-C
exits at once. Cleanup (staging dirs, scratch dirs) still runs on the first: the handler raises, and
`with`/`finally` blocks unwind before the entry point sees the exception.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_INTERRUPTED = 130
MESSAGE = "auditq: interrupted; nothing was written"
_pressed = False
_told = False


class Interrupted(BaseException):
    """Ctrl-C, kept apart from KeyboardInterrupt so click does not turn it into exit 1 ("Aborted!")."""


def tell() -> None:
    """The one line on stderr, once however many layers report the interruption."""
    global _told
    if _told:
        return
    _told = True
    try:
        sys.stderr.write(MESSAGE + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - a closed stderr must not change the exit code
        pass


def _handler(signum, frame) -> None:
    global _pressed
    if _pressed:  # second Ctrl-C: stop now
        tell()
        os._exit(EXIT_INTERRUPTED)
    _pressed = True
    raise Interrupted()


def install() -> None:
    if signal.getsignal(signal.SIGINT) is not _handler:
        signal.signal(signal.SIGINT, _handler)


def installed() -> bool:
    return signal.getsignal(signal.SIGINT) is _handler


def interrupted() -> bool:
    return _pressed


def exit_interrupted() -> None:
    tell()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(EXIT_INTERRUPTED)  # no interpreter shutdown: half-imported modules cannot raise again
