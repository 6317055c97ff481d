"""Every registered executor (auditq.audit.executors.EXECUTORS) runs the same plan to the same report.

A small real audit (3 tiny Llama checkpoints, fp and rtn4, every probe) is measured by the local executor's own
`execute` once, then by each registered executor through run_audit; verdicts, values and every per-sample score
must be identical, and what the executor measured must be in the result cache afterwards (a second plan of
the same audit has nothing left to measure). Ray runs on the session's real local cluster (tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from auditq.audit.executors import EXECUTORS
from auditq.audit.pipeline import run_audit
from auditq.audit.request import audit_request
from auditq.cache.store import ResultCache
from auditq.verdict.config import AuditConfig


@pytest.fixture(scope="module")
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


def small_request(small, **given):
    return audit_request(base=small["base"], unlearned=small["unlearned"], retrain=small["retrain"],
                         suite=small["suite"], formats=("fp", "rtn4"),
                         config=AuditConfig(min_n=1, bootstrap_resamples=50), **given)


def fingerprint(outcome) -> dict:
    """Verdicts, values and every per-sample score of an audit, keyed so order does not matter."""
    checks = {(c.format, c.check): (c.verdict, c.value, c.ci_low, c.ci_high) for c in outcome.report.all_checks()}
    samples = {(r.format, r.role, name): [(s.split, s.record_id, dict(s.scores), s.generation) for s in out.samples]
               for r in outcome.runs for name, out in r.outputs.items()}
    errors = {(r.format, r.role): r.error for r in outcome.runs}
    return {"verdict": outcome.report.verdict, "checks": checks, "samples": samples, "errors": errors}


@pytest.fixture(scope="module")
def reference(small):
    return fingerprint(run_audit(small_request(small), created="t"))


@pytest.mark.slow
@pytest.mark.parametrize("name", EXECUTORS.names())
def test_executor_matches_local_and_fills_the_cache(name, small, reference, tmp_path, request):
    if name == "ray":
        request.getfixturevalue("ray_cluster")
    cache = ResultCache(tmp_path / "cache")
    outcome = run_audit(small_request(small, executor=name, cache=cache), created="t")
    assert fingerprint(outcome) == reference
    assert all(r.error is None for r in outcome.runs) and cache.misses > 0
    again = run_audit(small_request(small, executor=name, cache=cache), created="t")
    assert fingerprint(again) == reference
    assert again.report.cache["misses"] == outcome.report.cache["misses"]  # the same cache object: no new miss
    assert all(v.startswith("cached:") for f in again.report.formats for r in f.roles.values()
               for v in r.provenance.values())


def test_listing_executors_imports_neither_ray_nor_torch():
    import subprocess
    import sys

    code = ("import sys; from auditq.audit.executors import EXECUTORS; assert EXECUTORS.names() == ['local', 'ray'];"
            "assert 'ray' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
