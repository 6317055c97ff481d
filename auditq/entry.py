"""The console-script entry point: Ctrl-C handling is installed before anything heavy is imported.

`auditq.cli` imports typer and rich, and the commands import torch and transformers (seconds on a
loaded machine). A KeyboardInterrupt raised inside import machinery can surface as anything — a
RecursionError, a half-imported numpy, an ImportError — so the handler also records that Ctrl-C was
pressed, and `main` exits 130 whenever that flag is set, whatever exception arrives. A second Ctrl-C
exits at once. Cleanup (staging dirs, scratch dirs) still runs on the first: the handler raises, and
`with`/`finally` blocks unwind before `main` sees the exception.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_INTERRUPTED = 130
_pressed = False


class Interrupted(BaseException):
    """Ctrl-C, kept apart from KeyboardInterrupt so click does not turn it into exit 1 ("Aborted!")."""


def _message() -> None:
    try:
        sys.stderr.write("auditq: interrupted; nothing was written\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - a closed stderr must not change the exit code
        pass


def _handler(signum, frame) -> None:
    global _pressed
    if _pressed:  # second Ctrl-C: stop now
        _message()
        os._exit(EXIT_INTERRUPTED)
    _pressed = True
    raise Interrupted()


def interrupted() -> bool:
    return _pressed


def _exit_interrupted() -> None:
    _message()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(EXIT_INTERRUPTED)  # no interpreter shutdown: half-imported modules cannot raise again


def main() -> None:
    signal.signal(signal.SIGINT, _handler)
    try:
        from auditq.cli import main as cli_main

        cli_main()
    except SystemExit:
        if _pressed:
            _exit_interrupted()
        raise
    except BaseException:  # noqa: BLE001 - whatever Ctrl-C turned into
        if _pressed:
            _exit_interrupted()
        raise


if __name__ == "__main__":
    main()
