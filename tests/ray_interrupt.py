"""Ctrl-C on Ray, shared by tests/audit/test_ray_interrupt.py (check) and tests/sweep/test_sweep_ray.py (sweep).

The installed console script runs in a clean environment against the session's local cluster (tests/conftest.py
`ray_cluster`); the worker's test-only hold hook (auditq.audit.executors.worker, armed by the marker file saying
"hold [DIR...]") writes each held task's pid to `<marker>.running.<checkpoint dir>` and waits while the marker
still says so. Once the wanted tasks surely run, a real SIGINT is sent. The marker keeps saying hold until the
cluster has been checked, so a task that was not cancelled would still hold its CPU. The cluster has no
dashboard (so no state API): "nothing left" is read from the cluster's free CPUs (all of them only when no task
runs or waits with a granted CPU) and from the held worker processes being gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: the bound on exit after the press: the executor polls every 2 s, the sweep joins its threads within 15 s
EXIT_WITHIN_S = 30.0


def clean_env(tmp_path: Path) -> dict[str, str]:
    """What a CI runner has (as tests/validate/test_subprocess.py's clean_env): nothing auditq needs."""
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
            "AUDITQ_CACHE_DIR": str(tmp_path / "cache"), "LANG": "C.UTF-8"}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def held(marker: Path) -> dict[str, int]:
    """checkpoint dir -> pid of every task the hold hook holds now (or held: the files stay)."""
    found = {}
    for path in marker.parent.glob(f"{marker.name}.running.*"):
        try:
            found[path.name.rsplit(".running.", 1)[1]] = int(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # being written
            pass
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def interrupt_while_held(args: list[str], marker: Path, hold: str, wanted: set[str] | None, tmp_path: Path):
    """Run `auditq ARGS`, press Ctrl-C once the tasks of `wanted` dirs (None: any one) are held, check that
    nothing is left on the cluster; (exit code, seconds from the press to the exit, stderr)."""
    import ray

    cli = str(Path(sys.executable).parent / "auditq")
    marker.write_text(hold, encoding="utf-8")
    stderr = tmp_path / "stderr"
    ready = (lambda: bool(held(marker))) if wanted is None else (lambda: wanted <= set(held(marker)))
    try:
        with open(stderr, "w", encoding="utf-8") as err_file:
            proc = subprocess.Popen([cli, *args], env=clean_env(tmp_path), stdout=subprocess.DEVNULL,
                                    stderr=err_file)
            try:
                wait_for(lambda: ready() or proc.poll() is not None, 300, "tasks held on Ray")
                assert proc.poll() is None, stderr.read_text(encoding="utf-8")[-2000:]
                pids = held(marker)
                pressed = time.monotonic()
                proc.send_signal(signal.SIGINT)
                code = proc.wait(timeout=60)
                took = time.monotonic() - pressed
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
        # nothing of the audit left: the held workers gone, every CPU free, with the marker still saying hold
        for name, pid in pids.items():
            wait_for(lambda: gone(pid), 60, f"the held {name} worker {pid} to be gone")
        total = ray.cluster_resources().get("CPU")
        wait_for(lambda: ray.available_resources().get("CPU") == total, 60, "every CPU of the cluster free")
    finally:
        marker.unlink(missing_ok=True)
        for path in marker.parent.glob(f"{marker.name}.running.*"):
            path.unlink()
    return code, took, stderr.read_text(encoding="utf-8")
