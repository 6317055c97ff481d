"""Variants of the demo probe suite that the e2e tests and bench/demo_verdicts.py both audit on.

One copy of the rule, so the benchmark's figures (README) come from the same suite the tests pin.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

#: record ids of the demo's prose passages (the rest are templated bios and their QA)
PASSAGE_MARK = "-passage-"


def bios_only(suite: Path, out: Path) -> Path:
    """The demo suite cut down to its templated part, written to `out`: bios (and their QA), no prose."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("forget", "retain", "holdout"):
        lines = [line for line in (suite / f"{name}.jsonl").read_text().splitlines()
                 if PASSAGE_MARK not in json.loads(line)["id"]]
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    for name in ("suite.toml", "calibration.txt"):
        shutil.copy(suite / name, out / name)
    return out
