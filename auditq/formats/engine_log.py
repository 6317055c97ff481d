"""Keep an engine's log when it fails: the scratch dir that holds it is deleted when the audit ends.

A failing quantizer's message names the log; that name must still exist when the user reads it.
The log is copied to ``ctx.log_dir`` when the caller gives one (e.g. the report's
--out dir), else to ``<system temp>/auditq-logs/``, which auditq never deletes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path


def kept_log_dir(given: Path | str | None) -> Path:
    return Path(given) if given else Path(tempfile.gettempdir()) / "auditq-logs"


def keep_log(log_path: Path, log_dir: Path | str | None, label: str) -> Path | None:
    """Copy `log_path` to a kept place; returns the copy, or None when there is no log or no place."""
    log_path = Path(log_path)
    if not log_path.is_file():
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    try:
        target_dir = kept_log_dir(log_dir)
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{safe}-{stamp}-{os.getpid()}.log"
        shutil.copyfile(log_path, target)
    except OSError:
        return None
    return target.resolve()
