"""Ctrl-C on Ray: the installed console script, in a clean environment, runs `check --executor ray` against
the test's local cluster (tests/conftest.py `ray_cluster`); the test presses Ctrl-C (a real SIGINT) while a
task surely runs on the cluster, and checks exit 130 with one line, no traceback, nothing written, and nothing
of the audit left running or waiting on the cluster.

"A task surely runs": the worker's test-only hold hook (auditq.audit.executors.worker, armed by the marker file
saying "hold") touches `<marker>.running` and waits while the marker still says hold. The marker is left
saying hold until the cluster is checked, so a task that was not cancelled would still hold its CPU.
The cluster has no dashboard (so no state API): "nothing left" is read from the cluster's free CPUs, which are
back to all of them only when no task runs, and from the held worker process being gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_ctrl_c_on_ray_cancels_the_tasks_and_exits_130(small, ray_cluster, tmp_path):
    import ray

    marker = ray_cluster.fault
    running = Path(f"{marker}.running")
    running.unlink(missing_ok=True)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "AUDITQ_CACHE_DIR": str(tmp_path / "cache"), "LANG": "C.UTF-8"}
    out = tmp_path / "out"
    args = [str(Path(sys.executable).parent / "auditq"), "check", str(small["base"]), str(small["unlearned"]),
            "--retrain", str(small["retrain"]), "--suite", str(small["suite"]), "-f", "fp,rtn4", "--threads", "1",
            "--out", str(out), "-q", "--executor", "ray", "--ray-address", ray_cluster.address]
    marker.write_text("hold", encoding="utf-8")
    stderr = tmp_path / "stderr"
    try:
        with open(stderr, "w") as err_file:
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
            try:
                _wait_for(lambda: running.is_file() or proc.poll() is not None, 300, "a task running on Ray")
                assert proc.poll() is None, stderr.read_text()[-2000:]
                held = int(running.read_text(encoding="utf-8"))
                pressed = time.monotonic()
                proc.send_signal(signal.SIGINT)
                code = proc.wait(timeout=60)
                took = time.monotonic() - pressed
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
        text = stderr.read_text(encoding="utf-8")
        assert code == 130, text[-2000:]
        assert took < 30, took
        assert "Traceback" not in text and "auditq: interrupted; nothing was written" in text
        assert not out.exists()
        # nothing of the audit left: the held worker is gone and every CPU is free, with the marker still "hold"
        _wait_for(lambda: _gone(held), 60, f"the held worker {held} to be gone")
        total = ray.cluster_resources().get("CPU")
        _wait_for(lambda: ray.available_resources().get("CPU") == total, 60, "every CPU of the cluster free")
    finally:
        marker.unlink(missing_ok=True)
        running.unlink(missing_ok=True)
