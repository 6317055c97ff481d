"""Ctrl-C on Ray: the installed console script, in a clean environment, runs `check --executor ray` against
the test's local cluster (tests/conftest.py `ray_cluster`); the test presses Ctrl-C (a real SIGINT) while a
task surely runs on the cluster (the worker's test-only hold hook: tests/ray_interrupt.py), and checks exit 130
with one line, no traceback, nothing written, and nothing of the audit left running or waiting on the cluster.
"""

from __future__ import annotations

import pytest
from ray_interrupt import EXIT_WITHIN_S, interrupt_while_held


@pytest.mark.slow
def test_ctrl_c_on_ray_cancels_the_tasks_and_exits_130(small, ray_cluster, tmp_path):
    out = tmp_path / "out"
    args = ["check", str(small["base"]), str(small["unlearned"]), "--retrain", str(small["retrain"]), "--suite",
            str(small["suite"]), "-f", "fp,rtn4", "--threads", "1", "--out", str(out), "-q", "--executor", "ray",
            "--ray-address", ray_cluster.address]
    code, took, stderr = interrupt_while_held(args, ray_cluster.fault, "hold", None, tmp_path)
    assert code == 130, stderr[-2000:]
    assert took < EXIT_WITHIN_S, took
    assert "Traceback" not in stderr and "auditq: interrupted; nothing was written" in stderr
    assert not out.exists()
