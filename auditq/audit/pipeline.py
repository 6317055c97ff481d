"""The audit pipeline: load → formats → probes → scoring → verdicts → report.

Every format is derived from the one in-memory full-precision copy of each checkpoint,
and both BASE and UNLEARNED (and RETRAIN when given) are measured in every format, so
each metric can be read as retention = unlearned / base at the same precision.

The request arrives ready (auditq.audit.request): its inputs were checked by the light stage
(auditq.validate.inputs) and are not checked again here; what needs the heavy modules (a probe's
records in the suite, whether the models fit the device) is checked here, before any weights are read.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from auditq.audit.assemble import RowInputs, build_report
from auditq.verdict.policy import gate
from auditq.audit.records import RunRecord
from auditq.audit.request import ROLES, AuditRequest, calibration_texts, probe_settings
from auditq.checkpoint.load import Checkpoint, check_compatible, load_checkpoint
from auditq.errors import InputError
from auditq.formats import Format, FormatContext
from auditq.probes import PROBES, Probe, ProbeSettings
from auditq.result.model import AuditReport

__all__ = ["AuditOutcome", "AuditRequest", "Events", "Timer", "build_report", "gate", "run_audit"]


@dataclass(frozen=True)
class AuditOutcome:
    report: AuditReport
    runs: tuple[RunRecord, ...]
    timings: dict[str, float]


class Events:
    """Progress sink; the CLI plugs rich progress bars in, tests and library users get silence."""

    def stage(self, description: str, total: int) -> Callable[[int], None]:
        return lambda n=1: None

    def note(self, message: str) -> None:
        pass

    def say(self, message: str) -> None:
        """A line the user should read (memory estimate, a dtype fallback); progress bars stay separate."""


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class _Measured:
    """What one audit measured inside its scratch dir, for the report."""

    runs: list[RunRecord]
    details: dict[str, dict[str, Any]]
    evidence: dict[str, dict[str, Any] | None]
    cache: Any  # auditq.cache.store.CacheSession or None


def run_audit(request: AuditRequest, events: Events | None = None, created: str | None = None) -> AuditOutcome:
    """Plan (auditq.audit.plan), execute one checkpoint at a time (auditq.audit.executor), report."""
    from auditq.cache.store import row_provenance  # measured or cached (with the entry's sha256), per row

    events = events or Events()
    timer = Timer()
    options = request.options
    torch.manual_seed(options.seed)
    settings = probe_settings(request.suite, options.protocol, **options.probe_overrides())
    formats = request.all_formats
    probes = _probes(request)
    if options.max_batch_tokens is not None and options.max_batch_tokens < 1:
        raise InputError(f"--max-batch-tokens must be positive, got {options.max_batch_tokens}")
    from auditq.audit.executors import EXECUTORS

    # connected first: an unreachable Ray cluster is bad input (exit 2) before any weights are read
    with EXECUTORS.load(getattr(options, "executor", "local"))(options) as executor:
        placement = _placement(request, events)
        checkpoints = _load_lazily(request, placement, timer)
        # the scratch dir lives for the whole audit (formats leave per-role artefacts in it for the report)
        with tempfile.TemporaryDirectory(prefix="auditq-") as scratch:
            measured = _measure(request, Path(scratch), formats, probes, settings, checkpoints, placement, events,
                                timer, executor)
    provenance, cache_summary = row_provenance(measured.cache, formats, checkpoints, [p.name for p in probes],
                                               request.cache)
    inputs = RowInputs(details=measured.details, provenance=provenance, cache_summary=cache_summary,
                       evidence=measured.evidence)
    report = build_report(request, formats, measured.runs, checkpoints, created or _now(), inputs)
    return AuditOutcome(report=report, runs=tuple(measured.runs), timings=dict(timer.seconds))


def _probes(request: AuditRequest) -> list[Probe]:
    """The probes asked for (names checked by the light stage); a suite without the records a probe needs is
    bad input (exit 2), not an UNKNOWN row: checked here because the probe modules are heavy."""
    probes = [PROBES.load(name)() for name in request.options.probes]
    for probe in probes:
        probe.check_suite(request.suite)
    return probes


def _placement(request: AuditRequest, events: Events):
    """--device/--dtype/--device-map against this machine and BASE's size (exit 2 when one model cannot fit)."""
    from auditq.checkpoint.placement import resolve

    placement = resolve(request.options.compute, request.options.base)
    events.say(placement.estimate_line())
    if placement.note:
        events.say(placement.note)
    return placement


def _load_lazily(request: AuditRequest, placement, timer: Timer) -> dict[str, Checkpoint]:
    """Config and tokenizer of every model; weights are read by the executor, one checkpoint at a time, only if
    some row is not cached."""
    checkpoints: dict[str, Checkpoint] = {}
    with timer("load"):
        for role, path in request.options.models().items():
            checkpoints[role] = load_checkpoint(path, role, trust_remote_code=request.options.trust_remote_code,
                                                dtype=placement.dtype, device=placement.device,
                                                device_map=placement.device_map, lazy=True)
            if role != "base":
                check_compatible(checkpoints["base"], checkpoints[role], role)
    return checkpoints


def format_context(request: AuditRequest, scratch: Path, placement) -> FormatContext:
    """The context every format is applied with (the executor sets the role per checkpoint)."""
    suite, options = request.suite, request.options
    return FormatContext(
        workdir=scratch, batch_size=options.batch_size, calibration_texts=calibration_texts(request),
        seed=options.seed, max_batch_tokens=options.max_batch_tokens,
        parity_texts=tuple(r.text for r in suite.forget.texts + suite.holdout.texts),
        suite=suite,  # relearn:* trains on the suite's data
        device=placement.device,
        compute={"device": placement.device.split(":")[0], "dtype": placement.dtype_name,
                 "device_map": placement.device_map})


def _measure(request: AuditRequest, scratch: Path, formats: list[Format], probes: list[Probe],
             settings: ProbeSettings, checkpoints: dict[str, Checkpoint], placement, events: Events,
             timer: Timer, executor: Any) -> _Measured:
    """Plan against the cache, execute, and read the weight-space evidence the formats left in `scratch`."""
    from auditq.audit.evidence import evidence_for_formats, through_cache
    from auditq.audit.executor import row_details
    from auditq.audit.plan import plan_audit

    suite = request.suite
    roles = [r for r in (*ROLES, "reference") if r in checkpoints]
    ctx = format_context(request, scratch, placement)
    cache = request.cache.session(suite=suite, settings=settings, ctx=ctx,
                                  trust_remote_code=request.options.trust_remote_code) if request.cache else None
    if cache is not None:
        cache.exclude(request.artifact_formats)  # external artifact files are not fingerprinted: never cached
    total = (len(formats) * len([r for r in roles if r != "reference"]) + ("reference" in roles)) * \
        sum(p.size(suite) for p in probes)
    advance = events.stage("quantizing and probing", total)
    lookup = None
    if cache is not None:  # relearn:forget rows are keyed on the forget half they score (Format.suite_view)
        lookup = lambda fmt, role, wanted: cache.lookup(fmt, checkpoints[role], wanted, advance,  # noqa: E731
                                                        fmt.suite_view(suite, ctx.seed))
    identity = lambda role: repr(sorted(checkpoints[role].file_hashes.items()))  # noqa: E731 - the cache's key
    with timer("cache"):
        plan = plan_audit(formats, roles, probes, lookup, identity)
    executed = executor.execute(plan, checkpoints, ctx, suite, settings, timer=timer, advance=advance,
                                events=events, cache=cache, lookup=lookup)
    runs = executed.runs
    with timer("weight_evidence"):
        evidence = evidence_for_formats(scratch, [f.name for f in formats],
                                        {r: c.path for r, c in checkpoints.items()})
        evidence = {f.name: through_cache(cache, f, checkpoints, evidence.get(f.name)) for f in formats}
    # what each format reported where it was applied (a Ray worker), unless the cache served it whole
    details = row_details(formats, placement, {**executed.details, **(cache.details() if cache is not None else {})})
    return _Measured(runs=runs, details=details, evidence=evidence, cache=cache)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
