"""The `auditq` command line (typer + rich): the app, its commands (one module each: auditq.cli.check, demo,
remediate, report, cache) and `main`. Errors are one line on stderr with a distinct exit code."""

from __future__ import annotations

import os
import re
import sys

import typer
import typer.core

from auditq import __version__
from auditq.cli import cache, check, demo, remediate, report, sweep
from auditq.cli.common import RichEvents, err, out  # noqa: F401 - RichEvents re-exported for library callers
from auditq.errors import EXIT_MEASURE, AuditqError

#: listed under every command's help: a CI pipeline gates on these
EXIT_CODES = ("Exit codes: 0 every gating check passes (or is waived); 1 a gating check fails, or is inconclusive "
              "(unless --fail-on fail); 2 bad input, refused before any work; 3 something could not be measured; "
              "130 interrupted.")



def _variadic_arguments_read_plainly() -> None:
    """typer (0.29) labels a variadic argument `<list[Path]>` in help; show `<path>` as for a single one (the
    usage line already says `[CANDIDATE]...`). A no-op where typer has no such hook."""
    argument = getattr(typer.core, "TyperArgument", None)
    original = getattr(argument, "display_type", None)
    if original is None or getattr(original, "_auditq_plain", False):
        return

    def display_type(self, ctx):  # noqa: ANN001, ANN202 - typer's own signature
        text = original(self, ctx)
        return re.sub(r"^<list\[(\w+)\]>$", lambda m: f"<{m.group(1).lower()}>", text) if isinstance(text, str) else text

    display_type._auditq_plain = True
    argument.display_type = display_type


_variadic_arguments_read_plainly()

# plain click help (rich_markup_mode=None): it wraps at 80 columns instead of truncating option names
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Audit whether an unlearned LLM stays unlearned in the forms it is deployed in: quantized, "
                       "pruned, fine-tuned again.", epilog=EXIT_CODES)
app.command(short_help="Audit an unlearned checkpoint against its base in every format.", epilog=EXIT_CODES)(check.check)
app.command(short_help="Build tiny demo models and audit the planted failure.", epilog=EXIT_CODES)(demo.demo)
app.command(short_help="Re-unlearn from BASE with SURE, write it, re-check it.", epilog=EXIT_CODES)(remediate.remediate)
app.command(short_help="Audit many candidates against one BASE and rank them.", epilog=EXIT_CODES)(sweep.sweep)
app.command("report", short_help="Re-render reports from a report.json, no measuring.")(report.report_cmd)
app.add_typer(cache.cache_app, name="cache", short_help="The result cache: info, clear.")


@app.command()
def version() -> None:
    """Print the auditq version."""
    out.print(__version__)


def main() -> None:
    """Entry point: one-line errors with exit 2 (input) or 3 (could not measure), never a traceback.

    Usage errors are typer's own (exit 2); everything else is caught here. Ctrl-C is handled by
    auditq.interrupt (installed by auditq.entry before this module is imported): exit 130 at any moment.
    """
    import logging

    from auditq import interrupt
    from auditq.interrupt import Interrupted, interrupted

    for noisy in ("torchao", "torch.utils._pytree"):  # optional engines' import chatter
        logging.getLogger(noisy).setLevel(logging.ERROR)
    interrupt.install()  # in-process callers (tests) that skip auditq.entry
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        result = app(standalone_mode=False, prog_name="auditq")
        sys.exit(result if isinstance(result, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except usage_error as exc:  # click's usage errors as one line too (its default is a multi-line panel)
        message = exc.format_message()
        if message:  # an empty message: `auditq` or `auditq cache` alone, help already printed
            where = exc.ctx.command_path if exc.ctx is not None else "auditq"
            err.print(f"auditq: error: {message} (see `{where} --help`)", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except Interrupted:
        interrupt.tell()
        sys.exit(130)
    except AuditqError as exc:
        if interrupted():
            sys.exit(130)
        err.print(f"auditq: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # an unexpected crash: still one line and exit 3
        if interrupted():  # Ctrl-C inside an import can arrive as any exception
            sys.exit(130)
        if os.environ.get("AUDITQ_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        err.print(f"auditq: internal error: {type(exc).__name__}: {first} (set AUDITQ_DEBUG=1 for a traceback)",
                  highlight=False, markup=False, soft_wrap=True)
        sys.exit(EXIT_MEASURE)



if __name__ == "__main__":
    main()
