"""The console-script entry point (`auditq = "auditq.entry:main"`): importing it installs the Ctrl-C handler.

The generated console script runs ``from auditq.entry import main`` and then its own code (a regex
substitution on argv[0]) before it calls `main`; the handler is installed by the import itself (this module
and auditq.interrupt import nothing CPython has not already loaded but the builtin `_signal`), so it is in
place within ~1 ms of CPython's startup and before anything heavy (typer, rich, torch) is imported.
Only the console script (and ``python -m auditq``) imports this module; library code and tests use
auditq.interrupt, which installs nothing by being imported. The handling: auditq.interrupt.

Before this module runs, Ctrl-C is CPython's own: the process is killed by SIGINT before the interpreter
installs its handler, then "Fatal Python error: init_..." (exit 1) or an ignored KeyboardInterrupt while it
initialises its streams and imports site; from site's end to this import, a KeyboardInterrupt traceback
(killed by SIGINT). README "Reports and exit codes" has the measured windows (bench/bench_sigint.py).
"""

import _signal  # the builtin: a press from the next line on is only recorded (auditq.interrupt takes over below)

_early: list[int] = []
_signal.signal(_signal.SIGINT, lambda signum, frame: _early.append(signum))

from auditq import interrupt  # noqa: E402

interrupt.install(raising=False)  # a press before main's try block is recorded; main then exits 130
if _early:
    interrupt.record_press()
interrupt.quiet_swallowed_presses()

from auditq.interrupt import EXIT_INTERRUPTED, Interrupted, interrupted  # noqa: E402 - re-exported, after install

__all__ = ["EXIT_INTERRUPTED", "Interrupted", "interrupted", "main"]


def main() -> None:
    try:
        interrupt.install()  # from here on a press raises Interrupted, caught below
        if interrupt.interrupted():  # pressed while the console script was still importing this module
            interrupt.exit_interrupted()
        from auditq.cli.app import main as cli_main

        cli_main()
    except SystemExit:
        if interrupt.interrupted():
            interrupt.exit_interrupted()
        raise
    except BaseException:  # noqa: BLE001 - whatever Ctrl-C turned into
        if interrupt.interrupted():
            interrupt.exit_interrupted()
        raise
    if interrupt.interrupted():  # a press swallowed on the way ("Exception ignored in ..."): still interrupted
        interrupt.exit_interrupted()


if __name__ == "__main__":
    main()
