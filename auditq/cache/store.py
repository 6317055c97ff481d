"""The result cache: probe outputs of one model in one format, stored as JSON, re-used across runs.

An entry holds one probe's `ProbeOutput` (every sample's scores and texts) for one checkpoint in
one format. Its key is the sha256 of (as canonical JSON):

- the checkpoint's identity: sha256 of every weight, config and tokenizer file (`Checkpoint.file_hashes`),
  not its path and not its role, so a new unlearned model audited against the same base re-uses the
  base model's rows in every format;
- the format spec and the class implementing it;
- the suite's content hash, the probe settings, the probe name, the batch size, the seed and
  `trust_remote_code`;
- the auditq, torch, transformers (and, where installed, gguf and llama-cpp-python) versions, and a
  sha256 of auditq's own measuring code (probes, formats, backends, loading, suite parsing), so a
  source checkout that changes how something is measured never reads results of the old code.

Entries are plain JSON (never pickle), written atomically; an unreadable entry is a miss.
Every entry carries the sha256 of its canonical content and an HMAC-SHA256 of it under a per-user key
kept outside the cache dir (auditq.cache.key). An entry whose digest or HMAC does not match (edited,
forged, or written by someone without the key) is never used: it is dropped, re-measured, counted in
`ResultCache.tampered` and reported. Every row of the report says whether it was measured or served
from the cache (with the entry's sha256), and `--verify-cache N` re-measures N random cached rows. Floats
round-trip exactly (shortest repr; NaN and ±inf as JSON's non-standard literals), so a run
served from the cache reaches exactly the verdicts of the run that filled it. Rows that errored
are never stored; formats built from an external artifact file (``--artifact``) are never cached.

Location: ``platformdirs.user_cache_dir("auditq")/results``, or ``$AUDITQ_CACHE_DIR/results``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

from auditq import __version__
from auditq.probes.base import ProbeOutput, Sample
from auditq.regular_file import NotRegular, read_text
from auditq.safe_parse import loads_json

CACHE_FORMAT = 2  # 2: sha256 + HMAC per entry
_VERSIONED = ("torch", "transformers", "gguf", "llama-cpp-python")
_code_digest: str | None = None


def cache_root() -> Path:
    """$AUDITQ_CACHE_DIR, else the platform's user cache dir for auditq."""
    override = os.environ.get("AUDITQ_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("auditq"))


def results_dir() -> Path:
    return cache_root() / "results"


def measuring_files() -> list[Path]:
    """Every source file of the auditq package, in a stable order: what the cache key's code digest covers."""
    package = Path(__file__).resolve().parent.parent
    return sorted(p for p in package.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts)


def measuring_code_digest() -> str:
    """sha256 over every source file of the auditq package (path and bytes), computed once per process.

    The whole package, not a hand-kept list of "measuring" modules: a list goes stale the day a new module
    starts to fill the weights the probes read (it once missed the bf16 upcast), and a stale key serves old
    numbers as new. Any code change re-measures; that is the price of a key that cannot go stale."""
    global _code_digest
    if _code_digest is None:
        package = Path(__file__).resolve().parent.parent
        digest = hashlib.sha256()
        for path in measuring_files():
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        _code_digest = digest.hexdigest()
    return _code_digest


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"auditq": __version__, "auditq_code": measuring_code_digest()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def entry_key(material: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars for json (anything else unserialisable raises TypeError)."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def output_to_json(output: ProbeOutput) -> dict[str, Any]:
    samples = []
    for s in output.samples:
        record: dict[str, Any] = {"split": s.split, "id": s.record_id, "scores": dict(s.scores)}
        for key in ("prompt", "generation", "reference"):
            value = getattr(s, key)
            if value is not None:
                record[key] = value
        samples.append(record)
    return {"probe": output.probe, "info": dict(output.info), "samples": samples}


def output_from_json(data: dict[str, Any]) -> ProbeOutput:
    samples = tuple(Sample(split=s["split"], record_id=s["id"], scores=s["scores"], prompt=s.get("prompt"),
                           generation=s.get("generation"), reference=s.get("reference")) for s in data["samples"])
    return ProbeOutput(probe=data["probe"], samples=samples, info=data.get("info") or {})



def _drop(path: Path) -> None:
    """Remove a damaged or special cache entry (a FIFO, a socket, a dangling link; a directory is removed
    when empty) so the row is measured again; never fails the audit."""
    try:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass

class ResultCache:
    """A directory of JSON entries, one per (checkpoint, format, probe, settings ...) key."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else results_dir()
        self.hits = 0
        self.misses = 0
        self.stored = 0
        #: entries whose digest or HMAC did not verify (dropped and re-measured)
        self.tampered: list[str] = []
        self.last_session: CacheSession | None = None
        self._key: bytes | None = None

    def _signing_key(self) -> bytes:
        if self._key is None:
            from auditq.cache.key import signing_key

            self._key = signing_key(self.directory)
        return self._key

    def _seal(self, entry: dict[str, Any]) -> tuple[str, str]:
        from auditq.cache.key import seal

        return seal(entry, self._signing_key(), _plain)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            data = loads_json(read_text(path), path)  # too deep: a ValueError, dropped
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError, NotRegular):  # a FIFO entry: never opened, dropped
            _drop(path)  # a damaged entry is a miss, and is dropped
            return None
        if not isinstance(data, dict) or data.get("cache_format") != CACHE_FORMAT or data.get("key") != key:
            return None
        body = {k: v for k, v in data.items() if k not in ("sha256", "hmac")}
        try:
            digest, mac = self._seal(body)
        except (TypeError, ValueError):
            digest, mac = "", ""
        import hmac as _hmac

        if not (_hmac.compare_digest(str(data.get("sha256", "")), digest)
                and _hmac.compare_digest(str(data.get("hmac", "")), mac)):
            self.tampered.append(str(path))
            path.unlink(missing_ok=True)  # never trusted; the row is measured again and re-stored
            return None
        return data

    def put(self, key: str, material: dict[str, Any], payload: dict[str, Any]) -> bool:
        """Write one entry atomically; False (and nothing written) when the payload is not plain JSON."""
        entry = {"cache_format": CACHE_FORMAT, "key": key, "material": material, **payload}
        try:
            entry["sha256"], entry["hmac"] = self._seal(entry)
            text = json.dumps(entry, ensure_ascii=False, default=_plain)
        except (TypeError, ValueError):
            return False
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except OSError:  # a read-only or full cache dir never fails an audit
            return False
        self.stored += 1
        return True

    def entries(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*/*.json"))

    def size(self) -> tuple[int, int]:
        files = self.entries()
        return len(files), sum(p.lstat().st_size for p in files)  # lstat: a dangling or looping entry never raises

    def clear(self) -> tuple[int, int]:
        """Delete every entry (only the results/ folder: cached demo models stay); (files, bytes) removed."""
        count, size = self.size()
        if self.directory.is_dir():
            shutil.rmtree(self.directory)
        return count, size

    def session(self, *, suite, settings, ctx, trust_remote_code: bool) -> "CacheSession":
        self.last_session = CacheSession(self, suite=suite, settings=settings, ctx=ctx,
                                         trust_remote_code=trust_remote_code)
        return self.last_session


class CacheSession:
    """The cache bound to one audit's suite, settings and context (what every key shares)."""

    def __init__(self, cache: ResultCache, *, suite, settings, ctx, trust_remote_code: bool) -> None:
        self.cache = cache
        self.shared = {
            "cache_format": CACHE_FORMAT,
            "versions": _versions(),
            "suite_sha256": suite.content_hash,
            "settings": asdict(settings),
            "batch_size": ctx.batch_size,
            # where and in what precision it ran, and how batches were cut (auditq.checkpoint.placement, backends.batching)
            "max_batch_tokens": getattr(ctx, "max_batch_tokens", None),
            "compute": ctx.compute,
            "seed": ctx.seed,
            "trust_remote_code": bool(trust_remote_code),
            # GPTQ/AWQ results depend on the calibration text
            "calibration_sha256": hashlib.sha256("\n".join(ctx.calibration_texts).encode()).hexdigest(),
        }
        self.suite, self.settings, self.ctx = suite, settings, ctx  # for --verify-cache (auditq.cache.verify)
        #: (format name, id of the role's Checkpoint object) -> probe name -> "cached:<sha256>" for rows served from the cache
        self.sources: dict[tuple[str, int], dict[str, str]] = {}
        #: every cache hit: (format, checkpoint, probe, cached output, entry sha256), for --verify-cache
        self.hit_log: list[tuple[Any, Any, Any, ProbeOutput, str]] = []
        self.excluded: set[str] = set()   # format names never cached (external artifacts)
        self.applied: set[str] = set()    # formats whose apply() ran in this audit
        self._details: dict[str, dict[str, Any]] = {}

    def exclude(self, formats: Iterable) -> None:
        self.excluded.update(f.name for f in formats)

    def material(self, fmt, checkpoint, what: str) -> dict[str, Any]:
        cls = type(fmt)
        return {**self.shared, "format": fmt.name, "format_class": f"{cls.__module__}.{cls.__qualname__}",
                "checkpoint": dict(sorted(checkpoint.file_hashes.items())), "entry": what}

    def enabled(self, fmt, checkpoint) -> bool:
        return fmt.name not in self.excluded and bool(checkpoint.file_hashes)

    def lookup(self, fmt, checkpoint, probes, advance: Callable[[int], None], suite) -> dict[str, ProbeOutput]:
        """Cached outputs of the probes this (format, checkpoint) already has; advances progress for them."""
        found: dict[str, ProbeOutput] = {}
        if not self.enabled(fmt, checkpoint):
            return found
        for probe in probes:
            key = entry_key(self.material(fmt, checkpoint, f"probe:{probe.name}"))
            data = self.cache.get(key)
            output = None
            if data is not None:
                try:
                    output = output_from_json(data["output"])
                except (KeyError, TypeError):
                    output = None
            if output is None:
                self.cache.misses += 1
                continue
            self.cache.hits += 1
            found[probe.name] = output
            self.sources.setdefault((fmt.name, id(checkpoint)), {})[probe.name] = \
                f"cached:{data.get('sha256', '')}"
            self.hit_log.append((fmt, checkpoint, probe, output, str(data.get("sha256", ""))))
            advance(probe.size(suite))
        if len(found) == len(probes):  # no apply() this time: keep the details the last run recorded
            data = self.cache.get(entry_key(self.material(fmt, checkpoint, "details")))
            if data is not None and isinstance(data.get("details"), dict):
                self._details[fmt.name] = data["details"]
        return found

    def store(self, fmt, checkpoint, probe_name: str, output: ProbeOutput) -> None:
        self.applied.add(fmt.name)
        if not self.enabled(fmt, checkpoint):
            return
        material = self.material(fmt, checkpoint, f"probe:{probe_name}")
        self.cache.put(entry_key(material), material, {"output": output_to_json(output)})

    def store_details(self, fmt, checkpoint, details: dict[str, Any] | None = None) -> None:
        """After a measured run: what the format reported about itself (engine, tensor types, notes).

        `details`: what the format reported where it was applied (a Ray worker); None: ask `fmt` here.
        """
        self.applied.add(fmt.name)
        if not self.enabled(fmt, checkpoint):
            return
        try:
            details = fmt.details() if details is None else details
        except Exception:  # noqa: BLE001 - details are informational; build_report asks again
            return
        material = self.material(fmt, checkpoint, "details")
        self.cache.put(entry_key(material), material, {"details": details})

    def provenance(self, fmt_name: str, checkpoint, probe_names: Iterable[str]) -> dict[str, str]:
        """probe name -> "measured" or "cached:<entry sha256>" for one row (format × checkpoint)."""
        cached = self.sources.get((fmt_name, id(checkpoint)), {})
        return {name: cached.get(name, "measured") for name in probe_names}

    def details(self) -> dict[str, dict[str, Any]]:
        """Format name -> recorded details, for formats served wholly from the cache in this audit."""
        return {name: d for name, d in self._details.items() if name not in self.applied}


def row_provenance(session: "CacheSession | None", formats, checkpoints: dict, probe_names: list[str],
                   cache: "ResultCache | None" = None) -> tuple[dict[tuple[str, str], dict[str, str]], dict[str, Any]]:
    """((format, role) -> probe -> "measured" | "cached:<sha256>", the run's cache summary)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for fmt in formats:
        for role, checkpoint in checkpoints.items():
            out[(fmt.name, role)] = (session.provenance(fmt.name, checkpoint, probe_names) if session is not None
                                     else {name: "measured" for name in probe_names})
    summary = {"enabled": False} if cache is None else {
        "enabled": True, "directory": str(cache.directory), "hits": cache.hits, "misses": cache.misses,
        "tampered": list(cache.tampered), "verified": [], "signed": "hmac-sha256"}
    return out, summary
