"""Every registered executor (auditq.audit.executors.EXECUTORS) runs the same plan to the same report.

A small real audit (3 tiny Llama checkpoints, fp and rtn4, every probe) is measured once by the local executor
without a cache (the reference), then by each registered executor through run_audit; verdicts, values and every per-sample score
must be identical, and what the executor measured must be in the result cache afterwards (a second plan of
the same audit has nothing left to measure). Ray runs on the session's real local cluster (tests/conftest.py),
and one of its workers is SIGKILLed mid-task once: Ray's bounded retry must still give the same report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from small_audit import fingerprint, small_request

from auditq.audit.executors import EXECUTORS
from auditq.audit.pipeline import run_audit
from auditq.cache.store import ResultCache


@pytest.mark.slow
@pytest.mark.parametrize("name", EXECUTORS.names())
def test_executor_matches_local_and_fills_the_cache(name, small, reference, tmp_path, request):
    cache = ResultCache(tmp_path / "cache")
    if name == "ray":  # and a worker SIGKILLed mid-task once (auditq.audit.executors.worker): Ray retries it
        cluster = request.getfixturevalue("ray_cluster")
        cluster.fault.write_text("once", encoding="utf-8")
    try:
        outcome = run_audit(small_request(small, executor=name, cache=cache), created="t")
    finally:
        if name == "ray":
            cluster.fault.unlink(missing_ok=True)
    if name == "ray":
        assert Path(f"{cluster.fault}.taken").exists()  # a worker really died, and the retry measured the same
        Path(f"{cluster.fault}.taken").unlink()
    assert fingerprint(outcome) == reference
    assert all(r.error is None for r in outcome.runs) and cache.misses > 0
    again = run_audit(small_request(small, executor=name, cache=cache), created="t")
    assert fingerprint(again) == reference
    assert again.report.cache["misses"] == outcome.report.cache["misses"]  # the same cache object: no new miss
    assert all(v.startswith("cached:") for f in again.report.formats for r in f.roles.values()
               for v in r.provenance.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", EXECUTORS.names())
def test_executor_says_how_many_audits_run_at_once_and_cancels(name, small, request):
    """`slots` bounds auditq sweep's concurrent candidates: 1 locally, the cluster's CPUs on Ray (2 here);
    `cancel_outstanding` with nothing outstanding is harmless, and `resume` lets the next audit submit."""
    expected = 1
    if name == "ray":
        request.getfixturevalue("ray_cluster")
        expected = 2
    with EXECUTORS.load(name)(small_request(small, executor=name).options) as executor:
        assert executor.slots() == expected
        executor.cancel_outstanding()
        executor.resume()
    outcome = run_audit(small_request(small, executor=name, retrain=None, formats=("fp",)), created="t")
    assert all(r.error is None for r in outcome.runs)


def test_listing_executors_imports_neither_ray_nor_torch():
    import subprocess
    import sys

    code = ("import sys; from auditq.audit.executors import EXECUTORS; assert EXECUTORS.names() == ['local', 'ray'];"
            "assert 'ray' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
