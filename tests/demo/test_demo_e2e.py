"""End to end on the demo: the tool catches the planted failure and passes the good models.

The fragile model is forgotten at fp and rtn8 but its rtn4 codes are the base's codes, so the
forgotten data must come back at rtn4 (recovery FAIL, exit 1); the retrain model must PASS,
with --retrain and without it (a model trained without the forget set is what unlearning aims at).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from demo_suites import bios_only

from auditq.cli.app import main

pytestmark = pytest.mark.slow


def audit(monkeypatch, capsys, tmp_path, models, which: str, *extra: str, retrain: bool = True,
          suite: Path | None = None):
    out = tmp_path / which
    retrain_args = ["--retrain", str(models.retrain)] if retrain else []
    formats = [] if "-f" in extra else ["-f", "fp,rtn8,rtn4"]
    monkeypatch.setattr(sys, "argv", ["auditq", "check", str(models.base), str(getattr(models, which)),
                                      *retrain_args, "--suite", str(suite or models.suite),
                                      *formats, "--out", str(out), "-q", *extra])
    with pytest.raises(SystemExit) as info:
        main()
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    checks = {(c["format"], c["check"]): c for f in report["formats"] for c in f["checks"]}
    return int(info.value.code), report, checks, printed


def test_fragile_model_fails_at_rtn4_only(demo_models, monkeypatch, capsys, tmp_path):
    code, report, checks, printed = audit(monkeypatch, capsys, tmp_path, demo_models, "fragile")
    assert code == 1 and report["verdict"] == "FAIL"
    for fmt in ("fp", "rtn8"):
        gating = [c for (f, _), c in checks.items() if f == fmt and c["severity"] == "error"]
        memorisation = [c for c in gating if c["check"] != "privleak"]
        assert len(memorisation) >= 2 and all(c["verdict"] == "PASS" for c in memorisation), \
            [(c["check"], c["verdict"], c["message"]) for c in memorisation]
        # 133 forget vs 133 holdout texts (bios, prose and QA pairs as texts): PrivLeak never FAILs here and its
        # interval holds 0 (neither under- nor over-unlearned). Where gradient ascent stops depends on the
        # machine's float rounding: on one machine it was PASS (-6.5 [-19.2, +8.8]), on the machine of
        # 2026-12-03 +3.5 [-15.7, +22.6], INCONCLUSIVE against the +-20 gate (docs/demo.md).
        privleak = checks[(fmt, "privleak")]
        assert privleak["verdict"] in ("PASS", "INCONCLUSIVE"), privleak
        assert privleak["ci_low"] <= 0 <= privleak["ci_high"], privleak
        assert checks[(fmt, "privleak")]["extras"]["n_members"] >= 100
        assert checks[(fmt, "privleak")]["extras"]["n_nonmembers"] >= 100
    for metric in ("verbmem", "knowmem"):
        recovery = checks[("rtn4", f"recovery.{metric}")]
        assert recovery["verdict"] == "FAIL"
        assert recovery["value"] >= 0.8  # rtn4 gives back the original's codes: recovery close to 100%
        assert checks[("rtn4", f"forget_retention.{metric}")]["verdict"] == "FAIL"
    assert "FAIL" in printed and "rtn4" in printed


def test_retrain_model_passes_everywhere(demo_models, monkeypatch, capsys, tmp_path):
    code, report, checks, _ = audit(monkeypatch, capsys, tmp_path, demo_models, "retrain")
    failing = [(k, c["verdict"], c["message"]) for k, c in checks.items() if c["severity"] == "error" and c["verdict"] != "PASS"]
    assert code == 0 and not failing, failing


def test_honest_model_stays_unlearned_at_rtn4(demo_models, monkeypatch, capsys, tmp_path):
    _, _, checks, _ = audit(monkeypatch, capsys, tmp_path, demo_models, "honest")
    assert all(c["verdict"] != "FAIL" for c in checks.values() if c["severity"] == "error")
    for metric in ("verbmem", "knowmem"):
        assert checks[("rtn4", f"recovery.{metric}")]["verdict"] != "FAIL"
        assert checks[("rtn4", f"forget_retention.{metric}")]["verdict"] == "PASS"


def test_model_trained_without_the_forget_set_passes_without_retrain(demo_models, monkeypatch, capsys, tmp_path):
    """Finding 1: most users have no retrained model. Audited as 'unlearned' without --retrain, the retrain
    model (never saw the forget set) must PASS forget retention everywhere: its forget score IS the floor."""
    code, report, checks, _ = audit(monkeypatch, capsys, tmp_path, demo_models, "retrain", retrain=False)
    for fmt in ("fp", "rtn8", "rtn4"):
        for metric in ("verbmem", "knowmem"):
            check = checks[(fmt, f"forget_retention.{metric}")]
            assert check["verdict"] == "PASS", (fmt, metric, check["message"])
            assert check["extras"]["retention"] == "floor"
    for fmt in ("fp", "rtn8", "rtn4"):
        assert "not run" in next(f for f in report["formats"] if f["format"] == fmt)["details"]["reference_attack"]
        assert all("ref" not in role["mia"] for role in next(
            f for f in report["formats"] if f["format"] == fmt)["roles"].values())


def test_never_trained_model_passes_on_templated_records_where_the_raw_ratio_fails(
        demo_models, monkeypatch, capsys, tmp_path):
    """On bios only (every bio repeats the same phrases) a continuation of ANY bio overlaps the truth: the raw
    ratio unlearned/base of a model that never saw the forget set stays above 0.25 (the old rule's FAIL); the
    retention against the holdout floor is ~0 (PASS)."""
    suite = bios_only(demo_models.suite, tmp_path / "bios")
    _, _, checks, _ = audit(monkeypatch, capsys, tmp_path, demo_models, "retrain", "-f", "fp", retrain=False,
                            suite=suite)
    verbmem = checks[("fp", "forget_retention.verbmem")]
    assert verbmem["verdict"] == "PASS", verbmem["message"]
    assert verbmem["extras"]["raw_ratio"] > 0.25 and verbmem["extras"]["floor"] > 0.2


def test_auditq_demo_fails_at_rtn4(demo_models, tmp_path):
    """`auditq demo` as a user runs it (installed entry point, clean environment): FAIL at rtn4, exit 1."""
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(demo_models.root, cache / demo_models.root.name)  # the prebuilt models, found by their cache key
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AUDITQ_CACHE_DIR": str(cache)}
    auditq = Path(sys.executable).with_name("auditq")
    done = subprocess.run([str(auditq), "demo", "--out", str(tmp_path / "out"), "--threads", "1"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    checks = {(c["format"], c["check"]): c for f in report["formats"] for c in f["checks"]}
    assert report["verdict"] == "FAIL"
    assert checks[("rtn4", "recovery.knowmem")]["verdict"] == "FAIL"
    held = [(k, c["verdict"]) for k, c in checks.items() if k[0] in ("fp", "rtn8") and c["severity"] == "error"
            and not (c["verdict"] == "PASS" or (k[1] == "privleak" and c["verdict"] == "INCONCLUSIVE"
                                                 and c["ci_low"] <= 0 <= c["ci_high"]))]
    assert not held, held  # PrivLeak may be INCONCLUSIVE around 0 (see test_fragile_model_fails_at_rtn4_only)
    assert "negative = under-unlearned" in done.stdout
