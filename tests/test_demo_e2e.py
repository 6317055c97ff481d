"""End to end on the demo: the tool catches the planted failure and passes the good models.

The fragile model is forgotten at fp and rtn8 but its rtn4 codes are the base's codes, so the
forgotten data must come back at rtn4 (recovery FAIL, exit 1); the retrain model must PASS.
"""

from __future__ import annotations

import json
import sys

import pytest

from auditq.cli import main

pytestmark = pytest.mark.slow


def audit(monkeypatch, capsys, tmp_path, models, which: str, *extra: str):
    out = tmp_path / which
    monkeypatch.setattr(sys, "argv", ["auditq", "check", str(models.base), str(getattr(models, which)),
                                      "--retrain", str(models.retrain), "--suite", str(models.suite),
                                      "-f", "fp,rtn8,rtn4", "--out", str(out), "-q", *extra])
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
        # 27 forget vs 27 holdout texts give PrivLeak an interval of about ±40 points around a small value:
        # the honest verdict is INCONCLUSIVE, and it must never be FAIL here
        assert checks[(fmt, "privleak")]["verdict"] in ("PASS", "INCONCLUSIVE")
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
