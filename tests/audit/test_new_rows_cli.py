"""End to end through the installed console script in a clean environment (as CI runs it): a bf16
row, a relearn row under --seeds 2, and --privleak-reference-auc, on a tiny memorising checkpoint.

Nothing the user would not give: the command line, the checkpoint and suite dirs; the environment is
PATH, HOME, a cache dir and a locale (tests/validate/test_subprocess.py clean_env).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
for sub in (TESTS, TESTS / "audit", TESTS / "validate"):
    if str(sub) not in sys.path:
        sys.path.insert(0, str(sub))

from test_durability import _suite  # noqa: E402
from test_subprocess import clean_env  # noqa: E402
from tiny_memoriser import save_memorising_checkpoint  # noqa: E402


@pytest.mark.slow
def test_half_precision_seeds_and_reference_auc_through_the_console_script(tmp_path):
    base = save_memorising_checkpoint(tmp_path / "base")
    unlearned = shutil.copytree(base, tmp_path / "unlearned")
    suite = _suite(tmp_path / "suite")
    (tmp_path / "home").mkdir()
    exe = Path(sys.executable).parent / "auditq"
    spec = "relearn:retain:steps=2"
    proc = subprocess.run([str(exe), "check", str(base), str(unlearned), "--suite", str(suite), "-q", "--threads", "1",
                           "-f", f"fp,bf16,{spec}", "--seeds", "2", "--privleak-reference-auc", "0.4772",
                           "--probes", "mia", "--out", str(tmp_path / "out")],
                          env=clean_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = {r["format"]: r for r in report["formats"]}
    assert list(rows) == ["fp", "bf16", spec, f"{spec}@seed=1"]
    assert report["config"]["privleak_reference_auc"] == 0.4772 and report["arguments"]["seeds"] == 2
    for name in ("bf16",):
        assert rows[name]["error"] is None and rows[name]["details"]["changed_elements"] > 0
    privleak = next(c for c in rows["fp"]["checks"] if c["check"] == "privleak")
    assert privleak["extras"]["reference_auc_muse"] == 0.4772
    auc = privleak["extras"]["auc_muse"]
    assert privleak["value"] == pytest.approx((auc - 0.4772) / 0.4772 * 100, abs=1e-3)  # auc_muse is rounded to 1e-6
    summary = rows[spec]["details"]["durability"]
    assert summary == rows[f"{spec}@seed=1"]["details"]["durability"] and summary["seeds"] == 2
    assert "durability over 2 seeds" in (tmp_path / "out" / "report.md").read_text()
