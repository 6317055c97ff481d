"""The result cache's signing key and seal (sha256 + HMAC-SHA256 of an entry's canonical JSON).

The key is `$AUDITQ_CACHE_KEY` (a secret, e.g. a CI secret shared by the runners that share a
cache), else a random 32-byte key created once in `platformdirs.user_config_dir("auditq")/cache.key`
(mode 0600; `$AUDITQ_CACHE_KEY_FILE` overrides the path) — never inside the cache dir, so whoever can
only write the cache cannot sign an entry. What it does not protect against: someone who can read
the key (the same user account, or the CI secret) can forge entries; use `--no-cache` or
`--verify-cache N` for release gates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable


def key_file() -> Path:
    override = os.environ.get("AUDITQ_CACHE_KEY_FILE")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("auditq")) / "cache.key"


def signing_key(cache_dir: Path) -> bytes:
    """The per-user key; a per-process random key (no entry of another run verifies) if none can be kept."""
    secret = os.environ.get("AUDITQ_CACHE_KEY")
    if secret:
        return hashlib.sha256(secret.encode()).digest()
    path = key_file()
    try:
        if Path(cache_dir).resolve() in path.resolve().parents:
            raise OSError("the key file must not lie inside the cache dir")
        if path.is_file():
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
            if len(key) >= 16:
                return key
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.hex())
        try:
            os.link(tmp, path)  # first writer wins; concurrent first runs then share its key
        except FileExistsError:
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        finally:
            tmp.unlink(missing_ok=True)
        return key
    except (OSError, ValueError):
        return secrets.token_bytes(32)


def seal(entry: dict[str, Any], key: bytes, default: Callable[[Any], Any]) -> tuple[str, str]:
    """(sha256, HMAC-SHA256) of the entry's canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default).encode()
    return hashlib.sha256(text).hexdigest(), hmac.new(key, text, hashlib.sha256).hexdigest()
