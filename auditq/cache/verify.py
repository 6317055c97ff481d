"""`--verify-cache N`: re-measure N random cached rows and fail the run (exit 3) when one differs.

The HMAC on every cache entry stops whoever can write the cache but not read the key; this stops the
rest (a forged entry that is correctly signed): the chosen (format, model, probe) rows are measured
again from the weights, with the run's own settings, and compared sample by sample (scores within
1e-4 absolute or relative, generated texts exactly). A mismatch drops the entry and raises
MeasurementError naming the row.
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import replace
from pathlib import Path

from auditq.errors import MeasurementError
from auditq.regular_file import read_text

TOLERANCE = 1e-4


def _close(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))
    return a == b


def differs(cached, fresh) -> str | None:
    """The first difference between two ProbeOutputs, or None."""
    if len(cached.samples) != len(fresh.samples):
        return f"{len(cached.samples)} cached samples vs {len(fresh.samples)} measured"
    for old, new in zip(cached.samples, fresh.samples):
        if (old.split, old.record_id) != (new.split, new.record_id):
            return f"sample {old.split}/{old.record_id} vs {new.split}/{new.record_id}"
        if old.generation != new.generation:
            return f"{old.split}/{old.record_id}: cached generation differs from the measured one"
        for key in set(old.scores) | set(new.scores):
            if not _close(old.scores.get(key), new.scores.get(key)):
                return f"{old.split}/{old.record_id} {key}: cached {old.scores.get(key)!r} vs measured {new.scores.get(key)!r}"
    return None


def verify_cached_rows(cache, n: int, seed: int, console=None) -> list[str]:
    """Re-measure up to `n` random cache hits of the last audit; the list of rows verified."""
    session = cache.last_session
    hits = list(session.hit_log) if session is not None else []
    if not hits:
        if console is not None:
            console.print("[dim]--verify-cache: no row of this run came from the cache; nothing to verify[/]")
        return []
    chosen = random.Random(seed).sample(hits, min(n, len(hits)))
    verified = []
    with tempfile.TemporaryDirectory(prefix="auditq-verify-") as scratch:
        ctx = replace(session.ctx, workdir=Path(scratch))
        for fmt, checkpoint, probe, cached, digest in chosen:
            with fmt.apply(checkpoint, ctx) as lm:
                try:
                    fresh = probe.run(lm, checkpoint.tokenizer, session.suite, session.settings)
                finally:
                    lm.close()
            problem = differs(cached, fresh)
            row = f"{fmt.name}/{checkpoint.path.name}/{probe.name}"
            if problem:
                for path in cache.entries():
                    if path.is_file() and digest and digest in read_text(path, errors="replace"):
                        path.unlink(missing_ok=True)
                raise MeasurementError(f"--verify-cache: cached row {row} (entry sha256 {digest[:16]}) does not match a "
                                       f"fresh measurement: {problem}; the entry was dropped, re-run to measure it")
            verified.append(f"{row}:{digest}")
    if console is not None:
        console.print(f"[dim]--verify-cache: {len(verified)} cached row(s) re-measured and identical[/]")
    return verified
