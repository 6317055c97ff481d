"""bench/bench_peers.py and bench/bench_mcq.py run end to end on a tiny model and a small suite.

Each runs as a subprocess on the tiny memorising checkpoint (tests/tiny_memoriser.py) with a 3-record suite: every
tool's row is printed with its times and ratios, and the MCQ accuracy of auditq at fp equals lm-eval's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from suite_files import write_suite
from tiny_memoriser import MEMORISED, QA_ANSWER, QA_QUESTION, UNSEEN, save_memorising_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _suite(root: Path) -> Path:
    mcq = {"question": QA_QUESTION, "choices": [QA_ANSWER, "far north", "blue"], "answer": 0}
    forget = [{"id": f"f{i}", "text": t} for i, t in enumerate(MEMORISED)]
    forget += [{"id": "fq", "question": QA_QUESTION, "answer": QA_ANSWER}, {"id": "fm", **mcq}]
    retain = [{"id": "r0", "text": UNSEEN[0]}, {"id": "rq", "question": "Where is the river?", "answer": "far north"},
              {"id": "rm", "question": "Where is the river?", "choices": ["blue", "far north"], "answer": 1}]
    holdout = [{"id": f"h{i}", "text": t} for i, t in enumerate(UNSEEN[1:])]
    holdout += [{"id": "hq", "question": "What colour is the sky?", "answer": "blue"}]
    return write_suite(root, forget=forget, retain=retain, holdout=holdout,
                       toml="[probes]\nprefix_tokens = 6\nmax_new_tokens = 8\nanswer_tokens = 6\n")


def _run(script: str, *args: str, tmp_path: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "datasets"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-peers")
    return save_memorising_checkpoint(root / "model"), _suite(root / "suite"), root


@pytest.mark.slow
def test_bench_peers_prints_every_tool_and_ratio(tiny_dirs):
    pytest.importorskip("lm_eval", reason="lm-eval is the auditq[peers] extra")
    model, suite, root = tiny_dirs
    out = _run("bench_peers.py", str(model), "--suite", str(suite), "--limit", "3", tmp_path=root)
    rows = {(m[1], m[2]): float(m[4]) for m in re.finditer(r"^(\S+)\s+(verbmem|knowmem|mia)\s+([\d.]+)\s+([\d.]+)",
                                                          out, re.M)}
    assert {k for k in rows} == {("auditq", m) for m in ("verbmem", "knowmem", "mia")} | \
        {("muse-style", m) for m in ("verbmem", "knowmem", "mia")} | {("lm-eval", "mia")}, out
    assert all(rows[("auditq", m)] == 1.0 for m in ("verbmem", "knowmem", "mia"))  # ratio to itself
    assert all(v > 0 for v in rows.values())
    assert len(re.findall(r"^fastest at (verbmem|knowmem|mia) \(CPU time\): \S+", out, re.M)) == 3, out
    assert "why:" in out


@pytest.mark.slow
def test_bench_mcq_agrees_with_lm_eval_at_fp(tiny_dirs):
    pytest.importorskip("lm_eval", reason="lm-eval is the auditq[peers] extra")
    model, suite, root = tiny_dirs
    out = _run("bench_mcq.py", str(model), "--suite", str(suite), "--formats", "fp,rtn8,rtn4", tmp_path=root)
    rows = {(m[1], m[2]): float(m[5]) for m in re.finditer(r"^(lm-eval|auditq)\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)",
                                                          out, re.M)}
    assert set(rows) == {("lm-eval", "fp"), ("auditq", "fp"), ("auditq", "rtn8"), ("auditq", "rtn4")}, out
    assert rows[("auditq", "fp")] == rows[("lm-eval", "fp")], out
    assert out.startswith("2 questions, 5 choices")
