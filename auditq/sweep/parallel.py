"""A sweep's candidates audited one after the other (local executor) or several at once (Ray).

The first candidate is always audited alone: it measures BASE and RETRAIN and puts them in the result cache,
so every later candidate's plan has only its own checkpoint left to measure (the cache proof of
tests/sweep/test_sweep.py holds on either executor). On an executor with more than one slot (a Ray cluster:
its CPUs, or its GPUs for a CUDA audit) the remaining candidates then run in driver threads, at most one per
slot, each through the same `report.publish.audit_validated` path as `auditq check`, so each candidate's tasks
are on the cluster together with the others'. Their progress is printed as lines labelled with the candidate
(rich shows one live progress bar at a time). The local executor stays sequential: one machine, one resident
checkpoint.

Ctrl-C reaches the main thread only: it stops every thread from submitting, cancels every outstanding task of
every candidate (auditq.audit.executors.onray.RayExecutor.cancel_outstanding), waits a bounded time for the
threads, and unwinds to exit 130. An error in one candidate does the same and is raised as that candidate's.
"""

from __future__ import annotations

from typing import Any

#: how often the main thread wakes up while candidates run (Ctrl-C is noticed at once anyway)
POLL_S = 1.0
#: how long the main thread waits for the candidates' threads after cancelling their tasks
JOIN_S = 15.0


def audit_candidates(checks: tuple, executor: Any, err: Any, quiet: bool) -> list[tuple]:
    """(label, check, checked, outcome) for every candidate, in the order given."""
    first, rest = checks[0], list(checks[1:])
    results = [_sequential(first, err, quiet)]
    slots = min(executor.slots(), len(rest))
    if slots <= 1:
        return results + [_sequential(entry, err, quiet) for entry in rest]
    return results + _parallel(rest, executor, err, quiet, slots)


def _sequential(entry: tuple, err: Any, quiet: bool) -> tuple:
    from auditq.report.publish import audit_validated

    label, check, checked = entry
    _say(err, quiet, f"auditq sweep: candidate {label} ({check.unlearned})")
    outcome, _ = audit_validated(check, checked, err)
    return label, check, checked, outcome


def _labelled(entry: tuple, err: Any, quiet: bool) -> tuple:
    """One candidate in a driver thread, its progress as lines labelled with it."""
    from auditq.report.progress import LabelledLines
    from auditq.report.publish import audit_validated

    label, check, checked = entry
    _say(err, quiet, f"auditq sweep: candidate {label} ({check.unlearned}), with others at once")
    outcome, _ = audit_validated(check, checked, err, events=LabelledLines(label, quiet, err))
    _say(err, quiet, f"[{label}] done: {outcome.report.verdict}")
    return label, check, checked, outcome


def _parallel(rest: list, executor: Any, err: Any, quiet: bool, slots: int) -> list[tuple]:
    """The candidates in `slots` driver threads; the first failure or Ctrl-C cancels everything."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    _say(err, quiet, f"auditq sweep: {len(rest)} candidate(s), up to {slots} at once on the cluster")
    executor.resume()  # a stop left by an earlier interrupted run in this process
    pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="auditq-sweep")
    futures = [pool.submit(_labelled, entry, err, quiet) for entry in rest]
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                raise failed[0].exception()
    except BaseException:  # Ctrl-C (auditq.interrupt.Interrupted) or one candidate's error
        executor.cancel_outstanding()
        for future in futures:
            future.cancel()
        _, still = wait(futures, timeout=JOIN_S)
        pool.shutdown(wait=False, cancel_futures=True)
        if not still:  # every thread is out: a later audit in this process may submit again
            executor.resume()
        raise
    pool.shutdown(wait=True)
    return [future.result() for future in futures]


def _say(err: Any, quiet: bool, message: str) -> None:
    if not quiet:
        err.print(message, highlight=False, markup=False)
