"""bench/gpu_check.sh, the prepared GPU run (issue 22), in its CPU stand-in mode (DEVICE=cpu).

The GPU machine runs it once; these tests make sure it runs clean end to end here and writes the JSON the
GPU run will write: every step present, every step with a status and its seconds, the figures in place.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"
STATUSES = {"ok", "failed", "timeout", "skipped", "not_checked"}

sys.path.insert(0, str(REPO / "bench"))
import gpu_check  # noqa: E402


def _run(tmp_path: Path, timeout: int, **env: str) -> dict:
    out = tmp_path / "out"
    full = {**os.environ, "DEVICE": "cpu", "OUT": str(out), "GPU_CHECK_WORK": str(tmp_path / "work"),
            "GPU_CHECK_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    proc = subprocess.run(["timeout", str(timeout), "bash", str(SCRIPT)], env=full, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout + 30)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "gpu_check.log").is_file()
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["schema"] == gpu_check.SCHEMA
    for key in ("device", "dtype", "shape", "budget_s", "install", "steps", "summary", "elapsed_s", "finished"):
        assert key in data, key
    for name, step in data["steps"].items():
        assert step["status"] in STATUSES, (name, step)
        assert isinstance(step["seconds"], (int, float)), (name, step)
        if step["status"] in ("skipped", "not_checked"):
            assert step.get("reason"), (name, step)
        if step["status"] in ("failed", "timeout"):
            assert step.get("error"), (name, step)
    assert set(data["summary"]["status"]) == set(data["steps"])
    # the files that come back from the device: at most 8, plain names, no deeper than 2 folders
    names = [p.name for p in out.rglob("*") if p.is_file()]
    assert len(names) <= 8 and all(n.replace(".", "").replace("_", "").replace("-", "").isalnum() for n in names)
    return data


def test_no_budget_skips_every_step_and_still_writes_the_json(tmp_path):
    data = _run(tmp_path, 60, GPU_CHECK_BUDGET_S="0")
    assert list(data["steps"]) == list(gpu_check.STEPS)
    assert all(s["status"] == "skipped" and "GPU_CHECK_STEPS=" in s["reason"] for s in data["steps"].values())
    assert data["install"]["status"] == "skipped"  # DEVICE=cpu: this machine's packages


def test_steps_subset_and_env(tmp_path):
    data = _run(tmp_path, 120, GPU_CHECK_STEPS="env,device_map,bench_7b,nonsense")
    assert list(data["steps"]) == ["env", "device_map", "bench_7b"]
    assert data["unknown_steps"] == ["nonsense"]
    env = data["steps"]["env"]
    assert env["status"] == "ok", env
    assert env["info"]["cuda_available"] in (True, False) and env["info"]["auditq"]
    assert data["steps"]["device_map"]["status"] == "skipped"  # auditq refuses --device-map on a CPU
    assert data["steps"]["bench_7b"]["status"] == "skipped"


def test_a_demo_build_waits_until_the_other_steps_ran(tmp_path):
    """With no demo cache, the build (CPU training, minutes) is deferred behind the GPU steps, not before them."""
    data = _run(tmp_path, 150, GPU_CHECK_STEPS="demo,device_map", GPU_CHECK_BUILD_DEMO="1", GPU_CHECK_BUDGET_S="35",
                GPU_CHECK_DEMO_CACHE=str(tmp_path / "no-demo-cache"))
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    if "step demo: deferred" in log:
        assert log.index("step demo: deferred") < log.index("step device_map: start") < log.rindex("step demo: ")
    else:  # a machine so loaded that even the cache probe ran out of the 35 s
        assert data["steps"]["demo"]["status"] == "timeout"
    assert data["steps"]["demo"]["status"] in ("skipped", "timeout")  # 35 s cannot build the demo models


def _report(verdict: str, loss: float, check_verdict: str = "PASS") -> dict:
    key = ("rtn4", "unlearned", "mia", "forget", "r1")
    return {"verdict": verdict, "verdicts": {"rtn4": {"privleak": check_verdict}},
            "samples": {key: {"scores": {"loss": loss, "mink": 2 * loss}, "generation": "x"}}}


def test_compare_reports_verdicts_and_per_sample_differences():
    same = gpu_check._compare(_report("PASS", 1.0), _report("PASS", 1.0 + 5e-5))
    assert same["same_verdicts"] and same["samples_loss_over_tolerance"] == 0
    assert same["max_abs_diff_loss"] == pytest.approx(5e-5)
    assert same["generations_identical"] == "1/1"
    other = gpu_check._compare(_report("PASS", 1.0), _report("FAIL", 1.01, "FAIL"))
    assert not other["same_verdicts"] and other["changed_checks"] == {"rtn4.privleak": ("PASS", "FAIL")}
    assert other["samples_loss_over_tolerance"] == 1


@pytest.mark.slow
def test_cpu_stand_in_runs_every_step_end_to_end(tmp_path):
    """The whole run on the tiny shape (minutes on a loaded 2-core machine): bench, bnb, gptq, the demo pair
    when the test session's demo models exist (else the step says why it skipped)."""
    demo_cache = os.environ.get("AUDITQ_TEST_DEMO_CACHE", str(REPO / ".pytest_cache" / "auditq-demo"))
    data = _run(tmp_path, 1500, GPU_CHECK_SHAPE="tiny", GPU_CHECK_BUDGET_S="1400", GPU_CHECK_DEMO_CACHE=demo_cache)
    steps = data["steps"]
    assert list(steps) == list(gpu_check.STEPS)
    assert steps["env"]["status"] == "ok"
    bench = steps["bench_main"]
    assert bench["status"] == "ok", bench
    figures = bench["figures"]
    for key in ("build_s", "audit", "audit_stages_s", "roofline", "roofline_same_tokens", "estimate_gib",
                "measured_peak_gib", "wall_ratio_same_tokens_roofline", "targets", "suite_tokens"):
        assert key in figures, key
    assert figures["shape"] == "tiny" and figures["device"] == "cpu"
    assert set(bench["checks"]) >= {"wall_le_1.3x_same_tokens_roofline", "estimate_at_least_measured_peak"}
    if importlib.util.find_spec("bitsandbytes"):
        assert steps["bnb_nf4"]["status"] == "ok", steps["bnb_nf4"]
        assert steps["bnb_nf4"]["rows"]["bnb:nf4"].get("kernel")
        # the demo step's comparison, on a real report (the demo models take too long to build here)
        report = gpu_check._read_report(tmp_path / "work" / "out-bnb_nf4")
        same = gpu_check._compare(report, report)
        assert same["same_verdicts"] and same["max_abs_diff_loss"] == 0.0 and same["samples_compared"] > 0
    if importlib.util.find_spec("gptqmodel"):
        assert steps["gptq4"]["status"] in ("ok", "timeout"), steps["gptq4"]
    assert steps["gguf_offload"]["status"] in ("ok", "not_checked")
    assert steps["demo"]["status"] in ("ok", "skipped"), steps["demo"]
    if steps["demo"]["status"] == "ok":
        assert steps["demo"]["checks"]["fp32_same_verdicts"] is True
        assert steps["demo"]["checks"][f"fp32_mean_logp_within_{gpu_check.TOL_FP32:g}"] is True
