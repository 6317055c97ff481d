"""`--out`: a fresh, complete directory that never overlaps an input.

Policy (README "Reports and exit codes"):

- an `--out` that is, contains, or lies inside the live result cache (which also holds the demo models) or
  the cache's signing key file is refused (exit 2) for every command, `--force` or not (`check_not_protected`);

- `--out ""` and an `--out` that is, contains, or lies inside any input (after resolving symlinks) are
  refused (exit 2) before any work;
- writability is proven before any work by creating and removing a probe file where the directory
  will be created (a read-only mount, a parent that is a file, a path under /proc: exit 2);
- an existing `--out` is replaced as a whole: the new files are written into a temp sibling, which
  auditq.report.dirswap.swap_in renames in for the old directory (Ctrl-C deferred over the renames) — no stale
  report.sarif or report.html can survive next to a new report.json. Without `--force` that is only done for an
  empty directory or an earlier auditq output (it holds a report.json written by auditq); any other
  existing directory is refused, so `--out .` or `--out ~/work` never deletes a user's files;
- directories get the usual modes under the umask (mkdtemp would make them 0700).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from auditq.errors import InputError
from auditq.regular_file import read_text, resolve
from auditq.safe_parse import loads_json

PROBE_PREFIX = ".auditq-write-probe-"


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path("/")


def _is_sweep(path: Path) -> bool:
    """`auditq sweep --out` (auditq.sweep.render): a sweep.json with its schema key."""
    try:
        data = loads_json(path.read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "sweep_schema" in data


def is_auditq_output(directory: Path) -> bool:
    """True for an empty dir or one holding a report.json (or a sweep's sweep.json) that auditq wrote."""
    entries = list(directory.iterdir())
    if not entries:
        return True
    if _is_sweep(directory / "sweep.json"):
        return True
    report = directory / "report.json"
    try:
        data = loads_json(read_text(report, "--out"), report)  # a FIFO: refused, not read
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "schema_version" in data and "tool_version" in data


def probe_writable(directory: Path, flag: str, shown: str) -> None:
    """Create and remove a probe file in `directory`; InputError naming `flag` when that fails."""
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{flag} {shown}: cannot write in {directory} ({exc.strerror or exc})") from None


def protected_paths() -> list[tuple[Path, str]]:
    """What an --out of any command must never be, lie inside or contain, whether or not this run uses it:
    the live result cache (its root also holds the demo models) and the cache's signing key file. With
    --force an --out is replaced as a whole, so an overlap would delete them."""
    from auditq.cache.key import key_file
    from auditq.cache.store import cache_root

    return [(cache_root(), "the result cache (AUDITQ_CACHE_DIR; it also holds the demo models)"),
            (key_file(), "the cache signing key file")]


def check_not_protected(raw: object, flag: str = "--out") -> None:
    """InputError (exit 2, one line) when `raw` is, lies inside or contains a protected path."""
    target = Path(str(raw)).expanduser().resolve()
    for path, what in protected_paths():
        try:
            source = Path(path).expanduser().resolve()
        except (OSError, RuntimeError):  # a symlink loop: compared as written; the key's own check names it
            source = Path(os.path.abspath(Path(path).expanduser()))
        if _overlaps(target, source):
            relation = "is" if target == source else "lies inside" if source in target.parents else "contains"
            raise InputError(f"{flag} {raw} {relation} {what} {source}; it would be replaced or deleted: "
                             "choose a directory outside it")


def check_out_dir(raw: Optional[str], inputs: Iterable[Optional[Path]], force: bool = False,
                  flag: str = "--out", allowed_inside: Optional[Path] = None) -> Optional[Path]:
    """Validate `--out` before any work; the Path to write to (None when not given)."""
    if raw is None:
        return None
    if not str(raw).strip():
        raise InputError(f"{flag} '': expected a directory path (an empty path would write into the current directory)")
    out = Path(str(raw)).expanduser()
    target = resolve(out, flag)  # a symlink loop: one line, not pathlib's RuntimeError
    check_not_protected(raw, flag)
    for path in inputs:
        if path is None:
            continue
        source = resolve(path)
        if allowed_inside is not None and source == Path(allowed_inside).resolve() and source in target.parents:
            continue
        if _overlaps(target, source):
            raise InputError(f"{flag} {raw} overlaps the input {path} (resolved: {target} vs {source}); "
                             "choose a directory outside every input")
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise InputError(f"{flag} {raw} is (or contains) the current directory, which would be replaced as a whole; "
                         "choose a new directory such as audit/")
    if target.exists():
        if not target.is_dir():
            raise InputError(f"{flag} {raw} exists and is not a directory")
        if not force and not is_auditq_output(target):
            raise InputError(f"{flag} {raw} exists and holds files auditq did not write; it would be replaced as a "
                             "whole: pass --force, or choose a new directory")
    anchor = _nearest_existing(target.parent)
    if not anchor.is_dir():
        raise InputError(f"{flag} {raw}: {anchor} is not a directory")
    probe_writable(anchor, flag, str(raw))
    return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fresh_staging(out: Path) -> Path:
    """A new, empty sibling of `out` (same filesystem, so the final rename is atomic), mode per umask."""
    target = Path(out).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(staging, 0o777 & ~_umask())
    return staging
