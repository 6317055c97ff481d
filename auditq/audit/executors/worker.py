"""The body of one Ray task: one checkpoint role loaded on a worker and measured in each of its formats.

The worker loads the checkpoint from its own path (shared storage, or the same machine), checks that its files
hash to what the driver planned with, and runs the local executor's `measure_step` for each step without a
cache: the driver, not the worker, writes the result cache and the report. Ray imports nothing here.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional

#: failure injection for the tests only: the path of a marker file the TEST writes ("once": the first task to
#: claim it SIGKILLs its own worker after its first step, mid-task; "always": every try of every task SIGKILLs
#: its worker as it starts, so Ray's retries run out; "hold [DIR...]": every task (or those whose checkpoint's
#: directory is named DIR) writes its pid to `<marker>.running.<DIR>` and waits while the file still says so,
#: at most HOLD_MAX_S, so a test can press Ctrl-C while tasks surely run).
#: Unset or no file: no-op.
FAULT_ENV = "AUDITQ_TEST_RAY_FAULT"
HOLD_MAX_S = 300.0


@dataclass(frozen=True)
class LoadSpec:
    """How the driver loaded a role's checkpoint, so a worker loads the same (and can tell if its copy differs)."""

    path: Path
    role: str
    trust_remote_code: bool
    dtype: Any
    device: Optional[str]
    device_map: Optional[str]
    file_hashes: dict


@dataclass(frozen=True)
class RoleTask:
    """One task: a role's steps that need measuring, with everything a probe run needs."""

    load: LoadSpec
    steps: tuple
    ctx: Any
    suite: Any
    settings: Any
    threads: int


@dataclass(frozen=True)
class StepResult:
    """One step's record and the details its format reported after being applied (None if it raised)."""

    record: Any
    details: Optional[dict]


class _NullEvents:
    def note(self, message: str) -> None:
        pass


@contextmanager
def _null_timer(name: str) -> Iterator[None]:
    yield


def run_role(task: RoleTask) -> list[StepResult]:
    """Load the checkpoint once, measure every step (resident formats first), release it."""
    _fault_hook("always")
    _hold_hook(Path(task.load.path))
    import torch

    from auditq.audit.executor import measure_step, resident_first
    from auditq.audit.records import RunRecord
    from auditq.checkpoint.load import load_checkpoint
    from auditq.checkpoint.memory import release_free_memory

    torch.set_num_threads(max(1, task.threads))
    spec = task.load
    checkpoint = load_checkpoint(spec.path, spec.role, trust_remote_code=spec.trust_remote_code, dtype=spec.dtype,
                                 device=spec.device or "cpu", device_map=spec.device_map, lazy=True)
    steps = resident_first(task.steps)
    if checkpoint.file_hashes != spec.file_hashes:  # another copy than the driver planned with: measure nothing
        why = f"the {spec.role} checkpoint's files on the Ray worker differ from the driver's ({spec.path})"
        return [StepResult(RunRecord(s.format.name, s.role, dict(s.cached), error=why), None) for s in steps]
    results: list[StepResult] = []
    try:
        for index, step in enumerate(steps):
            record = measure_step(step, checkpoint, task.ctx, task.suite, task.settings, timer=_null_timer,
                                  advance=lambda n=1: None, events=_NullEvents(), cache=None)
            results.append(StepResult(record, _details(step.format) if record.error is None else None))
            if index == 0:
                _fault_hook("once")
    finally:
        checkpoint.release()
        release_free_memory()
    return results


def _details(fmt) -> Optional[dict]:
    try:
        return dict(fmt.details())
    except Exception:  # noqa: BLE001 - details are informational; the driver asks its own Format then
        return None


def _fault_hook(when: str) -> None:
    """Test-only: kill this worker process with a real SIGKILL when the test's marker file says `when`."""
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return
    path = Path(marker)
    mode = _read_mode(path)  # "" when unreadable: never equal to `when`
    if mode != when:
        return
    if mode == "once":
        try:  # claim it atomically: of two tasks racing, one dies
            os.rename(path, f"{path}.taken")
        except OSError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def _hold_hook(checkpoint: Path) -> None:
    """Test-only: while the marker file says "hold" (naming this checkpoint's directory, or none), this task
    waits (bounded), after saying it runs."""
    import time

    marker = os.environ.get(FAULT_ENV)
    if not marker or not _holds(Path(marker), checkpoint):
        return
    Path(f"{marker}.running.{checkpoint.name}").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + HOLD_MAX_S
    while _holds(Path(marker), checkpoint) and time.monotonic() < deadline:
        time.sleep(0.2)


def _holds(marker: Path, checkpoint: Path) -> bool:
    words = _read_mode(marker).split()
    return bool(words) and words[0] == "hold" and (len(words) == 1 or checkpoint.name in words[1:])


def _read_mode(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
