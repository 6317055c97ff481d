"""The Ray executor's failure modes on a real local Ray cluster (tests/conftest.py `ray_cluster`), no mocks.

A worker process is killed with a real SIGKILL in the middle of its task (after its first format) by the
test-only hook in auditq.audit.executors.worker, armed by a marker file the test writes: killed on every try,
the rows are UNKNOWN with the reason and the audit exits 3, never PASS (killed once, Ray's retry gives the same
report as the local executor: tests/audit/test_executor_contract.py). The installed console script runs `check --executor ray` in a clean
environment against the same cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from small_audit import small_request

from auditq.audit.pipeline import run_audit
from auditq.result.model import PASS, UNKNOWN


@pytest.mark.slow
def test_worker_killed_on_every_try_gives_unknown_rows_with_the_reason(small, ray_cluster):
    ray_cluster.fault.write_text("always", encoding="utf-8")
    started = time.monotonic()
    try:
        report = run_audit(small_request(small, executor="ray", retrain=None, formats=("fp",)), created="t").report
    finally:
        ray_cluster.fault.unlink(missing_ok=True)
    assert time.monotonic() - started < 300       # bounded retries: no hang
    assert report.verdict == UNKNOWN and report.exit_code == 3
    checks = report.all_checks()
    assert checks and all(c.verdict != PASS for c in checks)
    assert all(c.verdict == UNKNOWN for c in checks if c.gating)
    errors = [r.error for f in report.formats for r in f.roles.values() if r.error]
    assert errors and all("ray: worker lost after 1 retry" in e for e in errors)


def _cli_args(small, out: Path) -> list[str]:
    return ["check", str(small["base"]), str(small["unlearned"]), "--retrain", str(small["retrain"]), "--suite",
            str(small["suite"]), "-f", "fp,rtn4", "--threads", "1", "--out", str(out), "-q", "--no-cache"]


def _read(out: Path) -> tuple[dict, list]:
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    checks = {(c["format"], c["check"]): (c["verdict"], c["value"]) for f in report["formats"] for c in f["checks"]}
    samples = sorted((r["format"], r["role"], r["probe"], r["split"], r["id"], json.dumps(r["scores"], sort_keys=True),
                      r.get("generation")) for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines()))
    return {"verdict": report["verdict"], "checks": checks}, samples


@pytest.mark.slow
def test_installed_cli_check_on_ray_matches_local(small, ray_cluster, tmp_path, monkeypatch, capsys):
    """`auditq check --executor ray --ray-address HOST:PORT` from the console script in a clean environment
    writes the same report.json verdicts and samples.jsonl scores as the same command run locally."""
    from tiny_memoriser import run_cli

    # what a CI runner has (as tests/validate/test_subprocess.py's clean_env): nothing auditq needs from the test
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "AUDITQ_CACHE_DIR": str(tmp_path / "cache"), "LANG": "C.UTF-8"}
    cli = Path(sys.executable).parent / "auditq"
    proc = subprocess.run([str(cli), *_cli_args(small, tmp_path / "ray"), "--executor", "ray", "--ray-address",
                           ray_cluster.address], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1, 3), proc.stderr[-2000:]  # random tiny models: UNKNOWN rows are honest
    assert "Traceback" not in proc.stderr
    code, _, _ = run_cli(monkeypatch, capsys, *_cli_args(small, tmp_path / "local"))
    assert code == proc.returncode
    on_ray, local = _read(tmp_path / "ray"), _read(tmp_path / "local")
    assert on_ray == local and on_ray[1]
