"""The compliance-gate fixtures: tiny real checkpoints, a suite, an in-process CLI runner, and a synthetic
AuditReport with every verdict. Used by tests/report, tests/cache, tests/audit and tests/verdict (each conftest imports them).

Every test using them gets its own AUDITQ_CACHE_DIR, so nothing touches the user's cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from report_helpers import MEMORISED, QA, UNSEEN, make_report, run_cli, save_memorising_checkpoint

#: holdout QA (never trained): the knowmem probe needs it, as the floor of forget KnowMem retention
HOLDOUT_QA = [{"id": "hq0", "question": "Who painted the red barn?", "answer": "Oren Vale"}]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(tmp_path_factory.mktemp("auditq-cache")))
    monkeypatch.delenv("AUDITQ_TODAY", raising=False)


@pytest.fixture
def cli(monkeypatch, capsys):
    return lambda *args: run_cli(monkeypatch, capsys, *map(str, args))


def _resave_with_other_bytes(checkpoint: Path) -> None:
    """The same tensors under other file bytes (a metadata entry): an unlearning that changed nothing, but not a
    byte copy, which auditq.verdict.degenerate would mark (never PASS) on every row and so change the verdicts
    these gate tests pin."""
    from safetensors.torch import load_file, save_file

    path = checkpoint / "model.safetensors"
    save_file(load_file(path), path, metadata={"format": "pt", "note": "re-saved copy of base"})


@pytest.fixture(scope="session")
def memorised(tmp_path_factory):
    """base == unlearned (the same tensors, re-saved): forget retention is exactly 1.0, a certain FAIL once min_n allows it.

    Also a suite on those texts and a config (min_n = 1, privleak threshold out of reach) under
    which the only gating failures are the forget_retention checks.
    """
    import torch
    from suite_files import write_suite

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("memorised")
    base = save_memorising_checkpoint(root / "base")
    unlearned = Path(shutil.copytree(base, root / "unlearned"))
    _resave_with_other_bytes(unlearned)
    byte_copy = Path(shutil.copytree(base, root / "byte-copy"))  # the cache tests: its rows hit BASE's entries
    forget = [{"id": f"f{i}", "text": t} for i, t in enumerate(MEMORISED)] + [{"id": "fq", "question": QA[0], "answer": QA[1]}]
    retain = [{"id": f"r{i}", "text": t} for i, t in enumerate(UNSEEN)] + [{"id": "rq", "question": QA[0], "answer": QA[1]}]
    holdout = [{"id": f"h{i}", "text": t} for i, t in enumerate(UNSEEN)] + HOLDOUT_QA
    suite = write_suite(root / "suite", forget=forget, retain=retain, holdout=holdout,
                        toml="[probes]\nprefix_tokens = 6\nmax_new_tokens = 8\nanswer_tokens = 6\n")
    config = root / "auditq.toml"
    config.write_text("min_n = 1\nbootstrap_resamples = 200\n[checks.privleak]\nthreshold = 1000\n")
    return {"base": base, "unlearned": unlearned, "byte_copy": byte_copy, "suite": suite, "config": config,
            "root": root}


@pytest.fixture(scope="session")
def random_pair(tmp_path_factory):
    """Two random tiny Llamas and a small suite: nothing memorised, so memorisation checks are UNKNOWN."""
    from formats.gguf_helpers import build_llama_checkpoint
    from suite_files import write_suite

    root = tmp_path_factory.mktemp("random-pair")
    base = build_llama_checkpoint(root / "base", hidden=32, intermediate=64, seed=0)
    unlearned = build_llama_checkpoint(root / "unlearned", hidden=32, intermediate=64, seed=1)
    other = build_llama_checkpoint(root / "other", hidden=32, intermediate=64, seed=2)
    texts = [{"id": f"t{i}", "text": f"The quick brown fox number {i} jumps over the lazy dog in Warsaw."}
             for i in range(6)]
    qa = [{"id": f"q{i}", "question": f"Where was Marie {i} born?", "answer": "Warsaw"} for i in range(2)]
    suite = write_suite(root / "suite", forget=texts[:3] + qa, retain=texts[3:] + qa, holdout=texts[3:] + HOLDOUT_QA,
                        toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 4\nanswer_tokens = 3\n")
    return {"base": base, "unlearned": unlearned, "other": other, "suite": suite, "root": root}


@pytest.fixture
def synthetic_report():
    return make_report(waivers=({"check": "privleak", "format": "rtn4", "reason": "tracked in TICKET-7",
                                 "expires": "2030-01-01", "source": "auditq-waivers.toml: waivers[0]",
                                 "status": "applied", "detail": "waives rtn4/privleak"},
                                {"check": "recovery", "format": "gguf:q4_0", "reason": "old", "expires": "2025-01-01",
                                 "source": "pyproject.toml: waivers[0]", "status": "unmatched",
                                 "detail": "no check 'recovery' in format 'gguf:q4_0' in this audit"}))
