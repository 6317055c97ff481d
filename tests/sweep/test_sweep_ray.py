"""`auditq sweep --executor ray` on a real local Ray cluster (tests/conftest.py `ray_cluster`, on 127.0.0.1)
gives the same ranking and the same figures as the local executor, each with its own result cache, so both
runs measure everything themselves.

Small random-init Llama checkpoints stand in for the candidates: what is compared is the executor, not the
unlearning (the demo sweep in test_sweep.py shows the ranking on planted models).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    from formats.gguf_helpers import build_llama_checkpoint
    from suite_files import write_suite

    root = tmp_path_factory.mktemp("sweep-ray")
    paths = {role: build_llama_checkpoint(root / role, hidden=32, intermediate=64, seed=seed)
             for seed, role in enumerate(("base", "a", "b", "retrain"))}
    texts = [{"id": f"t{i}", "text": f"The quick brown fox number {i} jumps over the lazy dog in Warsaw."}
             for i in range(6)]
    qa = [{"id": f"q{i}", "question": f"Where was Marie {i} born?", "answer": "Warsaw"} for i in range(2)]
    paths["suite"] = write_suite(root / "suite", forget=texts[:3] + qa, retain=texts[3:] + qa,
                                 holdout=texts[3:] + [{"id": "hq0", "question": "Where was Anna born?",
                                                       "answer": "Krakow"}],
                                 toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 4\nanswer_tokens = 3\n")
    return paths


def _sweep(paths, out: Path, cache: Path, monkeypatch, *executor: str) -> dict:
    from tiny_memoriser import run_cli

    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(cache))
    code, _, _ = run_cli(monkeypatch, None, "sweep", str(paths["base"]), str(paths["a"]), str(paths["b"]),
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
    on_ray = _sweep(candidates, tmp_path / "ray", tmp_path / "cache-ray", monkeypatch,
                    "--executor", "ray", "--ray-address", ray_cluster.address)
    assert on_ray["ranking"] == local["ranking"] and set(local["ranking"]) == {"a", "b"}
    assert _figures(on_ray) == _figures(local)
    assert on_ray["exit_code"] == local["exit_code"]
    for label in ("a", "b"):  # each candidate's own samples, per sample, equal across executors
        assert (tmp_path / "ray" / label / "samples.jsonl").read_text(encoding="utf-8") == \
            (tmp_path / "local" / label / "samples.jsonl").read_text(encoding="utf-8")
