"""Every file auditq reads is checked to be a regular file, after resolving links, before it is read.

Why: `open(path)` on a FIFO blocks until a writer appears (forever, in CI), a character device such as
/dev/zero or /dev/urandom never ends, and `Path.is_file()` answers False for a FIFO, a symlink loop and a
dangling link alike, so a caller that tests it first says "does not exist" or "has no config.json" about a
file that is right there. One helper serves every reader (weights, config and tokenizer files, suite files,
--config, --waivers, --calibration, --artifact, cache entries and key, report.json, `auditq report`'s input):

- `describe(path)` names what is there in a few words ("a FIFO", "a symlink loop", ...), or None for a regular
  file;
- `require_regular(path, what)` raises `NotRegular` (an InputError: exit 2, one line) for anything else;
- `open_regular` / `read_bytes` / `read_text` open with O_NONBLOCK (a FIFO opens at once instead of
  blocking), then check the open descriptor with fstat, so a file swapped for a FIFO between the check and
  the open is still refused: there is no window in which a read can block;
- `present(path, what)` is for optional files: False when nothing is there at all, True for a regular
  file, NotRegular for a special file or a broken link (never silently skipped).

A path that does not exist at all raises FileNotFoundError from the readers, as `open` does, so callers keep
their own "does not exist" messages and a result-cache miss stays a miss.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO, Optional, Union

from auditq.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotRegular(InputError):
    """A path that exists (or is a link) but is not a regular file: exit 2, one line naming the kind."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _kind_of_mode(mode: int) -> Optional[str]:
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def describe(path: PathLike) -> Optional[str]:
    """What `path` is when it is not a regular file ("a FIFO", "a symlink loop", "a dangling symlink to X",
    "missing"), or None when it is one (links followed)."""
    try:
        return _kind_of_mode(os.stat(path).st_mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            if os.path.islink(path):
                return f"a dangling symlink (to {os.readlink(path)})"
            return "missing"
        return f"unreadable ({exc.strerror or type(exc).__name__})"


def _message(path: PathLike, what: str, kind: str) -> str:
    subject = f"{what} {path}" if what else str(path)
    tail = "" if kind in ("a symlink loop",) or kind.startswith("a dangling") else ", not a regular file"
    return f"{subject} is {kind}{tail}"


def require_regular(path: PathLike, what: str = "") -> Path:
    """`path` as a Path when it is a regular file (after links); NotRegular (one line) when it exists as
    anything else; FileNotFoundError when nothing is there."""
    kind = describe(path)
    if kind is None:
        return Path(path)
    if kind == "missing":
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
    if kind.startswith("unreadable"):
        raise PermissionError(errno.EACCES, kind, str(path))
    raise NotRegular(_message(path, what, kind), kind)


def present(path: PathLike, what: str = "") -> bool:
    """For an optional file: False when nothing is at `path` (not even a link), True for a regular file,
    NotRegular for anything else (a FIFO, a directory, a loop, a dangling link are never silently skipped)."""
    if not os.path.lexists(path):
        return False
    require_regular(path, what)
    return True


def open_regular(path: PathLike, what: str = "", mode: str = "rb", encoding: Optional[str] = None,
                 errors: Optional[str] = None) -> IO:
    """Open a regular file for reading without ever blocking: O_NONBLOCK (a FIFO opens at once), fstat on
    the descriptor (what is checked is what is read), then blocking mode back on for the reads."""
    if any(c in mode for c in "wax+"):
        raise ValueError(f"open_regular reads only (mode {mode!r})")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.ENOENT, errno.EISDIR):  # ENXIO: a socket
            require_regular(path, what)  # names the loop / dangling link / socket; re-raises ENOENT
        raise
    try:
        kind = _kind_of_mode(os.fstat(fd).st_mode)
        if kind is not None:
            raise NotRegular(_message(path, what, kind), kind)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode, encoding=encoding, errors=errors) if "b" not in mode else os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: PathLike, what: str = "") -> bytes:
    """The bytes of a regular file (NotRegular for anything else, FileNotFoundError when missing)."""
    with open_regular(path, what, "rb") as handle:
        return handle.read()


def read_text(path: PathLike, what: str = "", encoding: str = "utf-8", errors: str = "strict") -> str:
    """The text of a regular file, decoded as `Path.read_text` does (UnicodeDecodeError passes through)."""
    with open_regular(path, what, "r", encoding=encoding, errors=errors) as handle:
        return handle.read()


def resolve(path: PathLike, what: str = "") -> Path:
    """Path(path).expanduser().resolve(), with a symlink loop anywhere on the way named in one line
    (NotRegular) instead of the RuntimeError pathlib raises for it (which escaped as a traceback, exit 3)."""
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError:
        raise NotRegular(_message(path, what, "a symlink loop"), "a symlink loop") from None
