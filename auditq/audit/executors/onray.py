"""The Ray executor: the plan's jobs as Ray tasks, one task per checkpoint role (its formats in the local
executor's order, so one checkpoint is resident per worker), results back to the driver, which writes the
result cache and the report.

Resources: one GPU per task when the audit's device is CUDA, one CPU otherwise (the worker computes with the
driver's torch thread count, so per-sample scores equal the local executor's). A worker that dies mid-task
(OOM killer, SIGKILL, node loss) is retried by Ray up to `MAX_RETRIES` times; after that its rows are UNKNOWN
with the reason. Ctrl-C cancels every outstanding task; a task still running after --ray-timeout is cancelled
and its rows are UNKNOWN. An identical checkpoint under two roles (deferred steps) is measured once: its
second role runs after the first one's outputs are in the cache.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from auditq.audit.executors import Executed
from auditq.audit.executors.worker import LoadSpec, RoleTask, StepResult
from auditq.audit.records import RunRecord
from auditq.errors import InputError

#: Ray's retries of a task whose worker process died (system failures; a probe's exception is a row error)
MAX_RETRIES = 1
#: how often the driver wakes up while waiting (Ctrl-C and the timeout are noticed within this)
POLL_S = 2.0


def _stay_on_loopback() -> None:
    """Keep this process's Ray node address on 127.0.0.1.

    On Linux Ray replaces a loopback address (a cluster's own, or the one a client is given) by the machine's
    network address, so other nodes could join. A cluster that `--ray-address local` starts here serves this
    process alone, and a client given 127.0.0.1:PORT must reach that address, not the rewritten one (where
    nothing listens: the client would retry forever). Ray keeps loopback when its multi-machine switch is off
    (as on macOS and Windows): read from the environment at import, and again when an address is resolved."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"].lower() in ("1", "true")


def _is_loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def start_local_cluster(num_cpus: int) -> None:
    """Start a one-machine Ray cluster bound to the loopback interface (127.0.0.1): it serves this process
    alone, so nothing of it should listen beyond this machine."""
    import logging

    _stay_on_loopback()
    import ray

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


def connect(address: str | None) -> bool:
    """Connect to (or, for "local", start) a Ray cluster; True when this call started it. Exit 2 if unreachable."""
    import logging

    import ray

    if ray.is_initialized():  # a sweep or a test already connected: share it
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address in (None, "local"):
            start_local_cluster(os.cpu_count() or 1)
        else:
            quiet.pop("include_dashboard")
            if address != "auto" and _is_loopback(address):
                _stay_on_loopback()
            ray.init(address=address, **quiet)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError: one line, exit 2
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"--ray-address {address}: cannot reach the Ray cluster ({first})") from None
    return True


class RayExecutor:
    """Submits one task per role to the Ray cluster of --ray-address; used as a context manager.

    Several audits may run in driver threads at once (`auditq sweep`'s candidates): every task any of them has
    outstanding is registered here, so Ctrl-C (seen by the main thread only) cancels them all at once."""

    name = "ray"
    _outstanding: set = set()
    _lock = threading.Lock()
    _stop = threading.Event()

    def __init__(self, options: Any) -> None:
        self.options = options
        self.address = getattr(options, "ray_address", None) or "local"
        self.timeout = float(getattr(options, "ray_timeout", None) or 6 * 3600)
        self._started = False

    def __enter__(self) -> "RayExecutor":
        self._started = connect(self.address)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            import ray

            ray.shutdown()

    def slots(self) -> int:
        """Audits worth running at once: the tasks the cluster runs together (its GPUs for a CUDA audit,
        its CPUs otherwise, as `_resources` asks), at least one."""
        import ray

        have = ray.cluster_resources()
        device = str(getattr(getattr(self.options, "compute", None), "device", "auto") or "auto")
        key = "GPU" if have.get("GPU", 0) >= 1 and device != "cpu" else "CPU"
        return max(1, int(have.get(key, 1)))

    @classmethod
    def cancel_outstanding(cls) -> None:
        """Ctrl-C: no new task is submitted by any thread, and every outstanding one is cancelled (its
        worker process killed). `resume` lifts the stop for a later run in the same process."""
        import ray

        cls._stop.set()
        with cls._lock:
            refs = list(cls._outstanding)
        for ref in refs:
            ray.cancel(ref, force=True)

    @classmethod
    def resume(cls) -> None:
        cls._stop.clear()

    def execute(self, plan, checkpoints, ctx, suite, settings, *, timer, advance, events, cache=None,
                lookup=None) -> Executed:
        """Wave 1: every role's steps not deferred; wave 2: deferred roles, after a cache lookup."""
        from auditq.audit.executor import resident_first

        results: dict[tuple[str, str], StepResult] = {}
        first = [s for s in plan.steps if not s.deferred]
        results.update(self._wave(first, checkpoints, ctx, suite, settings, advance, events, cache))
        deferred = [self._refresh(s, lookup, timer) for s in plan.steps if s.deferred]
        results.update(self._wave(deferred, checkpoints, ctx, suite, settings, advance, events, cache))
        runs, details = [], {}
        for role in plan.roles():
            for step in resident_first(plan.steps_for(role)):
                result = results[(role, step.format.name)]
                runs.append(result.record)
                if result.details is not None:
                    details[step.format.name] = result.details
        return Executed(runs=runs, details=details)

    @staticmethod
    def _refresh(step, lookup, timer):
        """A deferred step asks the cache again: the identical earlier role's outputs are there by now."""
        if lookup is None:
            return replace(step, deferred=False)
        with timer("cache"):
            found = dict(lookup(step.format, step.role, step.to_measure))
        return replace(step, cached=found, deferred=False,
                       to_measure=tuple(p for p in step.to_measure if p.name not in found))

    def _wave(self, steps, checkpoints, ctx, suite, settings, advance, events, cache) -> dict:
        """Cached steps answered here; the rest as one task per role; every measured output into the cache."""
        import torch

        out: dict[tuple[str, str], StepResult] = {}
        by_role: dict[str, list] = {}
        for step in steps:
            if step.needs_model:
                by_role.setdefault(step.role, []).append(step)
            else:
                out[(step.role, step.format.name)] = StepResult(RunRecord(step.format.name, step.role,
                                                                          dict(step.cached)), None)
        if not by_role:
            return out
        worker_ctx = replace(ctx, device=_worker_device(ctx.device))
        tasks = {role: RoleTask(load=_load_spec(checkpoints[role], role, worker_ctx, self.options),
                                steps=tuple(replace(s, cached={}) for s in role_steps),
                                ctx=replace(worker_ctx, role=role),
                                suite=suite, settings=settings, threads=torch.get_num_threads())
                 for role, role_steps in by_role.items()}
        for role in tasks:
            events.note(f"ray: {role} checkpoint in {len(by_role[role])} format(s)")
        returned = self._run(tasks, by_role, ctx, advance, suite)
        for role, role_steps in by_role.items():
            for step, result in zip(role_steps, _ordered(role_steps, returned[role])):
                record = result.record
                merged = RunRecord(record.format, role, {**step.cached, **record.outputs}, error=record.error)
                _store(cache, step, checkpoints[role], record, result.details)
                out[(role, step.format.name)] = StepResult(merged, result.details)
        return out

    def _run(self, tasks: dict, by_role: dict, ctx, advance, suite) -> dict[str, list[StepResult]]:
        """Submit, wait with a deadline, cancel everything outstanding on Ctrl-C or timeout."""
        import ray

        from auditq.interrupt import Interrupted

        remote = ray.remote(run_role_task)
        _check_resources(ctx)
        refs = {}
        with self._lock:
            if self._stop.is_set():  # another thread saw Ctrl-C: submit nothing more
                raise Interrupted()
            for role, task in tasks.items():
                ref = remote.options(max_retries=MAX_RETRIES, retry_exceptions=False, name=_task_name(role, task),
                                     **_resources(ctx)).remote(task)
                refs[ref] = role
            self._outstanding.update(refs)
        try:
            return self._wait(refs, by_role, advance, suite)
        except BaseException:  # Ctrl-C (auditq.interrupt.Interrupted) or anything else: nothing left running
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        finally:
            with self._lock:
                self._outstanding.difference_update(refs)

    def _wait(self, refs: dict, by_role: dict, advance, suite) -> dict[str, list[StepResult]]:
        """Results as they come, until all are in, --ray-timeout passes, or another thread saw Ctrl-C."""
        import ray

        from auditq.interrupt import Interrupted

        returned: dict[str, list[StepResult]] = {}
        deadline = time.monotonic() + self.timeout
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
            if self._stop.is_set():
                raise Interrupted()
            for ref in ready:
                role = refs[ref]
                returned[role] = _collect(ref, by_role[role])
                advance(sum(p.size(suite) for s in by_role[role] for p in s.to_measure))
            if pending and time.monotonic() > deadline:
                for ref in pending:
                    ray.cancel(ref, force=True)
                    role = refs[ref]
                    returned[role] = _failed(by_role[role], f"ray: task timed out after {self.timeout:g} s "
                                                            "(--ray-timeout) and was cancelled")
                pending = []
        return returned


def run_role_task(task: RoleTask) -> list[StepResult]:
    """The remote function (a module-level name, so Ray pickles it by reference)."""
    from auditq.audit.executors.worker import run_role

    return run_role(task)


def _collect(ref, steps) -> list[StepResult]:
    """A task's results; a worker that died (after its retries) or a crashed task: UNKNOWN rows with why."""
    import ray
    from ray import exceptions as rex

    try:
        return ray.get(ref)
    except rex.RayTaskError as exc:  # the task raised (not a worker death): bad input stays bad input
        cause = getattr(exc, "cause", None)
        if isinstance(cause, InputError):
            raise cause from None
        return _failed(steps, f"ray: task failed: {_first_line(cause or exc)}")
    except rex.RayError as exc:  # WorkerCrashedError, NodeDiedError, ObjectLostError, TaskCancelledError...
        return _failed(steps, f"ray: worker lost after {MAX_RETRIES} retr{'y' if MAX_RETRIES == 1 else 'ies'}: "
                              f"{type(exc).__name__}: {_first_line(exc)}")


def _task_name(role: str, task: RoleTask) -> str:
    """What Ray shows for the task (its timeline, `ray list tasks`): the role and the checkpoint's dir name."""
    return f"auditq {role} {Path(task.load.path).name}"


def _failed(steps, why: str) -> list[StepResult]:
    return [StepResult(RunRecord(s.format.name, s.role, {}, error=why), None) for s in steps]


def _ordered(steps, results: list[StepResult]) -> list[StepResult]:
    """The worker returns its steps resident-first; match them back to the driver's steps by format name."""
    by_name = {r.record.format: r for r in results}
    return [by_name[s.format.name] for s in steps]


def _store(cache, step, checkpoint, record: RunRecord, details) -> None:
    """What the worker measured goes into the driver's cache, as the local executor stores it."""
    if cache is None:
        return
    fmt = step.format
    for probe in step.to_measure:
        if probe.name in record.outputs:
            cache.store(fmt, checkpoint, probe.name, record.outputs[probe.name])
    if record.error is None:
        cache.store_details(fmt, checkpoint, details)


def _load_spec(checkpoint, role: str, ctx, options) -> LoadSpec:
    compute = ctx.compute or {}
    return LoadSpec(path=checkpoint.path, role=role, trust_remote_code=bool(getattr(options, "trust_remote_code", False)),
                    dtype=checkpoint.dtype, device=ctx.device, device_map=compute.get("device_map"),
                    file_hashes=dict(checkpoint.file_hashes))


def _worker_device(device: str | None) -> str | None:
    """Ray shows a task only the GPU it was granted, as cuda:0."""
    return "cuda:0" if str(device or "").startswith("cuda") else device


def _resources(ctx) -> dict[str, float]:
    """One GPU per task on CUDA (the worker sees it as cuda:0), one CPU otherwise."""
    if str(ctx.device or "cpu").startswith("cuda"):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": 1}


def _check_resources(ctx) -> None:
    """A request the cluster can never grant would wait forever: refuse it (exit 2) before submitting."""
    import ray

    wanted = _resources(ctx)
    have = ray.cluster_resources()
    for key, ray_key in (("num_gpus", "GPU"), ("num_cpus", "CPU")):
        if wanted.get(key, 0) > have.get(ray_key, 0):
            raise InputError(f"the Ray cluster has no {ray_key} for a task that needs {wanted[key]:g} "
                             f"(cluster: {have.get(ray_key, 0):g} {ray_key})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
