"""test_reference_attack.py audits the compliance-gate fixtures' tiny memorising checkpoint
(tests/report/gate_fixtures.py), as tests/cache does; every test here gets its own result-cache directory.
`small` and `reference`: the small real audit the executor tests share (tests/audit/small_audit.py)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))  # report_helpers, gate_fixtures

from gate_fixtures import _isolated_cache, memorised  # noqa: E402,F401


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    from formats.gguf_helpers import build_llama_checkpoint
    from suite_files import write_suite

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("contract")
    paths = {role: build_llama_checkpoint(root / role, hidden=32, intermediate=64, seed=seed)
             for seed, role in enumerate(("base", "unlearned", "retrain"))}
    texts = [{"id": f"t{i}", "text": f"The quick brown fox number {i} jumps over the lazy dog in Warsaw."}
             for i in range(6)]
    qa = [{"id": f"q{i}", "question": f"Where was Marie {i} born?", "answer": "Warsaw"} for i in range(2)]
    paths["suite"] = write_suite(root / "suite", forget=texts[:3] + qa, retain=texts[3:] + qa,
                                 holdout=texts[3:] + [{"id": "hq0", "question": "Where was Anna born?", "answer": "Krakow"}],
                                 toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 4\nanswer_tokens = 3\n")
    return paths


@pytest.fixture(scope="session")
def reference(small):
    """The small audit as the local executor measures it (no cache), once per session."""
    from small_audit import fingerprint, small_request

    from auditq.audit.pipeline import run_audit

    return fingerprint(run_audit(small_request(small), created="t"))
