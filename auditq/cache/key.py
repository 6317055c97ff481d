"""The result cache's signing key and seal (sha256 + HMAC-SHA256 of an entry's canonical JSON).

The key is `$AUDITQ_CACHE_KEY` (a secret, e.g. a CI secret shared by the runners that share a
cache), else a random 32-byte key created once in `platformdirs.user_config_dir("auditq")/cache.key`
(mode 0600; `$AUDITQ_CACHE_KEY_FILE` overrides the path) — never inside the cache dir, so whoever can
only write the cache cannot sign an entry. What it does not protect against: someone who can read
the key (the same user account, or the CI secret) can forge entries; use `--no-cache` or
`--verify-cache N` for release gates. A key shorter than 16 bytes, or a key file that exists but cannot be
read as one, is refused (exit 2) rather than used or silently replaced.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

from auditq.errors import InputError
from auditq.regular_file import NotRegular, describe, read_text, require_regular


def key_file() -> Path:
    override = os.environ.get("AUDITQ_CACHE_KEY_FILE")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("auditq")) / "cache.key"


#: the shortest signing key accepted: a shorter one (an empty key file, a one-character secret) makes
#: forging an entry's HMAC trivial
MIN_KEY_BYTES = 16


def signing_key(cache_dir: Path) -> bytes:
    """The per-user key; a per-process random key (no entry of another run verifies) if none can be kept.

    A key that exists but cannot serve — a key file that is a directory, unreadable, not hex, or shorter
    than MIN_KEY_BYTES, or an $AUDITQ_CACHE_KEY that short — is bad input: InputError (one line, exit 2),
    never silently replaced (an empty key would verify a forgery signed with the empty key; a random
    per-run key would hide the mistake as a cache that never hits).
    """
    secret = os.environ.get("AUDITQ_CACHE_KEY")
    if secret:
        if len(secret.strip().encode()) < MIN_KEY_BYTES:
            raise InputError(f"AUDITQ_CACHE_KEY holds {len(secret.strip().encode())} byte(s) besides whitespace: a "
                             f"cache signing secret needs at least {MIN_KEY_BYTES} (or unset it, or run with --no-cache)")
        return hashlib.sha256(secret.encode()).digest()
    path = key_file()
    if os.path.lexists(path) and describe(path) is not None:
        read_key(path)  # a FIFO, a directory, a loop, a dangling link: refused with one line naming it
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: Path.resolve raises RuntimeError on Python 3.11/3.12
        raise InputError(f"cache key file {path} is a symlink loop; remove it to have auditq create a new 32-byte "
                         "key, or run with --no-cache") from None
    if Path(cache_dir).resolve() in resolved.parents:
        raise InputError(f"cache key file {path} lies inside the cache dir {cache_dir}: whoever can write the cache "
                         "could sign entries; point AUDITQ_CACHE_KEY_FILE elsewhere")
    if path.exists() or path.is_symlink():
        return read_key(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.hex())
        try:
            os.link(tmp, path)  # first writer wins; concurrent first runs then share its key
        except FileExistsError:
            key = read_key(path)
        finally:
            tmp.unlink(missing_ok=True)
        return key
    except OSError:  # no key can be kept here (a read-only home): this run's entries verify in this run only
        return secrets.token_bytes(32)


def read_key(path: Path) -> bytes:
    """The hex key in `path`; InputError (one line) when it is not a readable file holding >= 16 bytes of hex."""
    fix = "remove it to have auditq create a new 32-byte key, or run with --no-cache"
    try:
        require_regular(path)
    except NotRegular as exc:  # a FIFO, a directory, a loop, a dangling link: named, never opened
        raise InputError(f"cache key file {path} is {exc.kind}, not a regular file; {fix}") from None
    try:
        text = read_text(path, "cache key file", encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise InputError(f"cache key file {path} cannot be read ({why}); fix its permissions, or {fix}") from None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise InputError(f"cache key file {path} does not hold a hex key; {fix}") from None
    if len(key) < MIN_KEY_BYTES:
        raise InputError(f"cache key file {path} holds a {len(key)}-byte key (at least {MIN_KEY_BYTES} needed); {fix}")
    return key


def seal(entry: dict[str, Any], key: bytes, default: Callable[[Any], Any]) -> tuple[str, str]:
    """(sha256, HMAC-SHA256) of the entry's canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default).encode()
    return hashlib.sha256(text).hexdigest(), hmac.new(key, text, hashlib.sha256).hexdigest()
