"""Ctrl-C state shared by the console script (auditq.entry), the CLI and the executor: exit 130 at any moment.

`auditq.cli.app` imports typer and rich, and the commands import torch and transformers (seconds on a
loaded machine). A KeyboardInterrupt raised inside import machinery can surface as anything — a
RecursionError, a half-imported numpy, an ImportError — so the handler also records that Ctrl-C was
pressed, and the entry point exits 130 whenever that flag is set, whatever exception arrives (or none:
a press swallowed on the way, "Exception ignored in ...", still ends the run with 130). A second Ctrl-C
exits at once. Cleanup (staging dirs, scratch dirs) still runs on the first: the handler raises, and
`with`/`finally` blocks unwind before the entry point sees the exception.

The console script imports this module first, so it imports nothing CPython has not loaded at startup but
the builtin `_signal` (the `signal` module would build its enums first: measurably longer, bench/bench_sigint.py).
"""

import _signal
import os
import sys

EXIT_INTERRUPTED = 130
MESSAGE = "auditq: interrupted; nothing was written"
_pressed = False
_told = False
#: False until the entry point's try block runs: a press before it is only recorded (raising there would
#: escape the console script as a traceback), and `main` exits 130 as soon as it starts
_raising = True


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
    if _raising:
        raise Interrupted()


def record_press() -> None:
    """A press the entry point caught before this module's handler was installed."""
    global _pressed
    _pressed = True


def install(raising: bool = True) -> None:
    """Route Ctrl-C here; `raising` False: record a press without raising (until install() is called again)."""
    global _raising
    _raising = raising
    if _signal.getsignal(_signal.SIGINT) is not _handler:
        _signal.signal(_signal.SIGINT, _handler)


def installed() -> bool:
    return _signal.getsignal(_signal.SIGINT) is _handler


def _unraisable(hook):
    def quiet(unraisable) -> None:
        if _pressed and unraisable.exc_type is Interrupted:
            return  # the press is recorded: the entry point exits 130 with one line
        hook(unraisable)
    return quiet


def quiet_swallowed_presses() -> None:
    """A press raised inside a weakref callback or __del__ ("Exception ignored in ...") prints no traceback.

    Console script only: in-process callers (tests) keep their own sys.unraisablehook.
    """
    sys.unraisablehook = _unraisable(sys.unraisablehook)


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
