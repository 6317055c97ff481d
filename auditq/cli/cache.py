"""`auditq cache clear|info`: the result cache (probe outputs re-used across runs)."""

from __future__ import annotations

import typer

from auditq.cli.common import out

cache_app = typer.Typer(no_args_is_help=True, help="The result cache (probe outputs re-used across runs).")


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every cached probe result (cached demo models are kept)."""
    from auditq.cache.store import ResultCache

    cache = ResultCache()
    count, size = cache.clear()
    out.print(f"removed {count} cached result(s), {size / 1e6:.1f} MB, from {cache.directory}")


@cache_app.command("info")
def cache_info() -> None:
    """Where the result cache is and how big it is."""
    from auditq.cache.store import ResultCache

    cache = ResultCache()
    count, size = cache.size()
    out.print(f"{cache.directory}: {count} cached result(s), {size / 1e6:.1f} MB")

