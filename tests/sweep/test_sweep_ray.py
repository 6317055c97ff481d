"""`auditq sweep --executor ray` on a real local Ray cluster (tests/conftest.py `ray_cluster`, on 127.0.0.1)
gives the same ranking and the same figures as the local executor, each with its own result cache, so both
runs measure everything themselves. On Ray the candidates after the first are audited at once: Ray's own
timeline (task start and duration, per task name "auditq ROLE DIR") shows candidate a's and b's tasks
overlapping on the 2-CPU cluster.

Small random-init Llama checkpoints stand in for the candidates: what is compared is the executor, not the
unlearning (the demo sweep in test_sweep.py shows the ranking on planted models).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    from formats.gguf_helpers import build_llama_checkpoint
    from suite_files import write_suite

    root = tmp_path_factory.mktemp("sweep-ray")
    paths = {role: build_llama_checkpoint(root / role, hidden=32, intermediate=64, seed=seed)
             for seed, role in enumerate(("base", "a", "b", "retrain", "c"))}
    texts = [{"id": f"t{i}", "text": f"The quick brown fox number {i} jumps over the lazy dog in Warsaw."}
             for i in range(6)]
    qa = [{"id": f"q{i}", "question": f"Where was Marie {i} born?", "answer": "Warsaw"} for i in range(2)]
    paths["suite"] = write_suite(root / "suite", forget=texts[:3] + qa, retain=texts[3:] + qa,
                                 holdout=texts[3:] + [{"id": "hq0", "question": "Where was Anna born?",
                                                       "answer": "Krakow"}],
                                 toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 4\nanswer_tokens = 3\n")
    return paths


def _tasks(since_us: float) -> list[tuple[str, float, float]]:
    """Ray's timeline of this session's cluster: (task name, start, end) in microseconds, since `since_us`
    (Ray puts a task's name in the event's category, "task::NAME")."""
    import ray

    return sorted((e["cat"][len("task::"):], e["ts"], e["ts"] + e["dur"]) for e in ray.timeline()
                  if e.get("ph") == "X" and str(e.get("cat", "")).startswith("task::auditq ") and e["ts"] >= since_us)


def _sweep(paths, out: Path, cache: Path, monkeypatch, *executor: str) -> dict:
    from tiny_memoriser import run_cli

    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(cache))
    code, _, _ = run_cli(monkeypatch, None, "sweep", str(paths["base"]), str(paths["a"]), str(paths["b"]), str(paths["c"]),
                         "--retrain", str(paths["retrain"]), "--suite", str(paths["suite"]), "-f", "fp,rtn4",
                         "--probes", "knowmem,mia,utility", "--out", str(out), "-q", "--threads", "1", *executor)
    summary = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert summary["exit_code"] == code
    return summary


def _figures(summary: dict) -> list:
    keep = ("rank", "label", "verdict", "exit_code", "checks", "forget_retention_fp", "forget_retention_worst",
            "worst_format", "recovery", "utility", "measured_roles")
    return [{k: row.get(k) for k in keep} for row in summary["candidates"]]


@pytest.mark.slow
def test_sweep_on_ray_ranks_and_measures_as_local(candidates, ray_cluster, tmp_path, monkeypatch):
    local = _sweep(candidates, tmp_path / "local", tmp_path / "cache-local", monkeypatch)
    since = time.time() * 1e6
    on_ray = _sweep(candidates, tmp_path / "ray", tmp_path / "cache-ray", monkeypatch,
                    "--executor", "ray", "--ray-address", ray_cluster.address)
    assert on_ray["ranking"] == local["ranking"] and set(local["ranking"]) == {"a", "b", "c"}
    assert _figures(on_ray) == _figures(local)
    assert on_ray["exit_code"] == local["exit_code"]
    for label in ("a", "b", "c"):  # each candidate's own samples, per sample, equal across executors
        assert (tmp_path / "ray" / label / "samples.jsonl").read_text(encoding="utf-8") == \
            (tmp_path / "local" / label / "samples.jsonl").read_text(encoding="utf-8")
    # the first candidate (a) measured BASE and RETRAIN, once; then b's and c's audits were on the cluster at once
    spans = {name: (start, end) for name, start, end in _tasks(since)}
    assert sorted(name for name, _, _ in _tasks(since)) == sorted(spans) == [
        "auditq base base", "auditq retrain retrain", "auditq unlearned a", "auditq unlearned b",
        "auditq unlearned c"]
    first = max(spans[name][1] for name in ("auditq base base", "auditq retrain retrain", "auditq unlearned a"))
    b, c = spans["auditq unlearned b"], spans["auditq unlearned c"]
    assert first <= min(b[0], c[0]), spans           # b and c after the first candidate was done
    assert b[0] < c[1] and c[0] < b[1], spans        # b and c overlapping in time


@pytest.mark.slow
def test_ctrl_c_during_a_parallel_sweep_cancels_every_candidate(candidates, ray_cluster, tmp_path):
    """The installed console script, clean environment: Ctrl-C while b's and c's tasks both run (held by the
    worker's test hook, tests/ray_interrupt.py) exits 130 within the bound, with no traceback, no --out, and
    nothing left on the cluster; the progress lines name their candidate."""
    from ray_interrupt import EXIT_WITHIN_S, interrupt_while_held

    out = tmp_path / "out"
    args = ["sweep", str(candidates["base"]), str(candidates["a"]), str(candidates["b"]), str(candidates["c"]),
            "--retrain", str(candidates["retrain"]), "--suite", str(candidates["suite"]), "-f", "fp,rtn4",
            "--probes", "knowmem,mia,utility", "--out", str(out), "--threads", "1", "--executor", "ray",
            "--ray-address", ray_cluster.address]
    code, took, stderr = interrupt_while_held(args, ray_cluster.fault, "hold b c", {"b", "c"}, tmp_path)
    assert code == 130, stderr[-2000:]
    assert took < EXIT_WITHIN_S, took
    assert "Traceback" not in stderr and "auditq: interrupted; nothing was written" in stderr
    assert "2 candidate(s), up to 2 at once on the cluster" in stderr and "[b] " in stderr and "[c] " in stderr
    assert not out.exists()
