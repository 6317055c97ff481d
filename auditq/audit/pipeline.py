"""The audit pipeline: load → formats → probes → scoring → verdicts → report.

Every format is derived from the one in-memory full-precision copy of each checkpoint,
and both BASE and UNLEARNED (and RETRAIN when given) are measured in every format, so
each metric can be read as retention = unlearned / base at the same precision.
"""

from __future__ import annotations

import platform
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from auditq import __version__
from auditq.audit.records import RunRecord
from auditq.checkpoint.load import (
    Checkpoint,
    check_compatible,
    check_configs_compatible,
    load_checkpoint,
    validate_checkpoint_dir,
)
from auditq.checkpoint.placement import ComputeRequest
from auditq.errors import InputError
from auditq.formats import Format, FormatContext, make_formats
from auditq.probes import DEFAULT_PROBES, PROBES, ProbeOutput, ProbeSettings
from auditq.result.model import (
    SCHEMA_VERSION,
    SIGN_CONVENTION,
    AuditReport,
    FormatResult,
    RoleMetrics,
)
from auditq.suite.records import Suite, load_suite
from auditq.verdict.config import AuditConfig
from auditq.verdict.policy import CheckEvaluator, FormatSamples, gate  # noqa: F401 - gate: moved, re-exported
from auditq.verdict.scoring import NO_REFERENCE, collect_samples, reference_role, role_metrics

ROLES = ("base", "unlearned", "retrain")


@dataclass(frozen=True)
class AuditRequest:
    base: Path
    unlearned: Path
    suite: Path
    formats: tuple[str, ...] = ("fp", "rtn8", "rtn4")
    probes: tuple[str, ...] = DEFAULT_PROBES
    retrain: Path | None = None
    reference: Path | None = None
    config: AuditConfig = field(default_factory=AuditConfig)
    seed: int = 0
    batch_size: int = 64
    trust_remote_code: bool = False
    allow_inconclusive: bool = False
    prefix_tokens: int | None = None
    max_new_tokens: int | None = None
    answer_tokens: int | None = None
    mink_k: float | None = None
    extra_formats: tuple[Format, ...] = ()
    #: gate policy: fail | inconclusive | never (None: "fail" if allow_inconclusive else "inconclusive")
    fail_on: str | None = None
    #: auditq.verdict.waivers.Waiver entries, judged on `today` (None: auditq.verdict.waivers.today_utc())
    waivers: tuple[Any, ...] = ()
    today: date | None = None
    #: auditq.cache.store.ResultCache, or None to measure everything
    cache: Any = None
    #: GPTQ/AWQ calibration: None (the suite's generic text), "forget" (stress option) or a text file
    calibration: str | None = None
    #: probe protocol: "auditq" (default) or "muse" (VerbMem/KnowMem as MUSE builds them, auditq.probes.muse)
    protocol: str = "auditq"
    #: --device / --dtype / --device-map (auditq.checkpoint.placement); resolved before any weights are read
    compute: ComputeRequest = field(default_factory=ComputeRequest)
    #: padded tokens per forward pass (rows × width); None: `batch_size` rows whatever their length
    max_batch_tokens: int | None = None

    @property
    def gate_policy(self) -> str:
        return self.fail_on or ("fail" if self.allow_inconclusive else "inconclusive")

    def arguments(self) -> dict[str, Any]:
        """The request as plain JSON values (for report.json)."""
        return {
            "base": str(self.base), "unlearned": str(self.unlearned), "suite": str(self.suite),
            "retrain": str(self.retrain) if self.retrain else None,
            "reference": str(self.reference) if self.reference else None,
            "formats": list(self.formats) + [f.name for f in self.extra_formats], "probes": list(self.probes),
            "seed": self.seed, "batch_size": self.batch_size, "trust_remote_code": self.trust_remote_code,
            "allow_inconclusive": self.allow_inconclusive, "fail_on": self.gate_policy,
            "prefix_tokens": self.prefix_tokens,
            "max_new_tokens": self.max_new_tokens, "answer_tokens": self.answer_tokens, "mink_k": self.mink_k,
            "calibration": self.calibration, "protocol": self.protocol,
            "device": self.compute.device, "dtype": self.compute.dtype, "device_map": self.compute.device_map,
            "max_batch_tokens": self.max_batch_tokens,
        }


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


def probe_settings(request: AuditRequest, suite: Suite) -> ProbeSettings:
    s = suite.settings
    pick = lambda flag, default: default if flag is None else flag  # noqa: E731
    from auditq.probes.muse import muse_defaults

    new_tokens, answer_tokens = muse_defaults(request.protocol, s.max_new_tokens, s.answer_tokens)
    settings = ProbeSettings(
        prefix_tokens=pick(request.prefix_tokens, s.prefix_tokens),
        max_new_tokens=pick(request.max_new_tokens, new_tokens),
        answer_tokens=pick(request.answer_tokens, answer_tokens),
        qa_template=s.qa_template,
        mink_k=pick(request.mink_k, s.mink_k),
        protocol=request.protocol,
    )
    if settings.prefix_tokens < 1 or settings.max_new_tokens < 1 or settings.answer_tokens < 1:
        raise InputError("prefix_tokens, max_new_tokens and answer_tokens must be positive")
    if not 0 < settings.mink_k <= 1:
        raise InputError(f"mink_k must be in (0, 1], got {settings.mink_k}")
    return settings


def calibration_texts(request: AuditRequest, suite: Suite) -> tuple[str, ...]:
    """Generic suite text by default (what deployers use); the forget set only when asked for."""
    if request.calibration is None:
        return suite.calibration_texts()
    if request.calibration == "forget":
        return tuple(r.text for r in suite.forget.texts)
    path = Path(request.calibration)
    try:
        lines = tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--calibration {path}: cannot read: {exc}") from None
    if not lines:
        raise InputError(f"--calibration {path}: no non-empty lines")
    return lines


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


FAIL_ON = ("fail", "inconclusive", "never")


def run_audit(request: AuditRequest, events: Events | None = None, created: str | None = None) -> AuditOutcome:
    """Validate, plan (auditq.audit.plan), execute one checkpoint at a time (auditq.audit.executor), report."""
    from auditq.audit.executor import execute, row_details
    from auditq.audit.plan import plan_audit
    from auditq.checkpoint.placement import resolve

    events = events or Events()
    timer = Timer()
    torch.manual_seed(request.seed)
    suite = load_suite(request.suite)
    settings = probe_settings(request, suite)
    formats = make_formats(list(request.formats)) + list(request.extra_formats)
    unknown_probes = [p for p in request.probes if p not in PROBES]
    if unknown_probes:
        raise InputError(f"unknown probe(s): {', '.join(unknown_probes)} (known: {', '.join(PROBES.names())})")
    probes = [PROBES.load(name)() for name in request.probes]
    for probe in probes:  # a suite without the records a probe needs is bad input (exit 2), not an UNKNOWN row
        probe.check_suite(suite)
    if request.max_batch_tokens is not None and request.max_batch_tokens < 1:
        raise InputError(f"--max-batch-tokens must be positive, got {request.max_batch_tokens}")

    paths = {"base": request.base, "unlearned": request.unlearned, "retrain": request.retrain,
             "reference": request.reference}
    present = {role: Path(path) for role, path in paths.items() if path is not None}
    for role, path in present.items():  # every input is checked before any weights are read
        validate_checkpoint_dir(path, role)
        if role != "base":
            check_configs_compatible(present["base"], path, role)
    placement = resolve(request.compute, present["base"])  # exit 2 here when one model cannot fit
    events.say(placement.estimate_line())
    if placement.note:
        events.say(placement.note)
    checkpoints: dict[str, Checkpoint] = {}
    with timer("load"):
        for role, path in present.items():
            # weights are read by the executor, one checkpoint at a time, only if some row is not cached
            checkpoints[role] = load_checkpoint(path, role, trust_remote_code=request.trust_remote_code,
                                                dtype=placement.dtype, device=placement.device,
                                                device_map=placement.device_map, lazy=True)
            if role != "base":
                check_compatible(checkpoints["base"], checkpoints[role], role)
    roles = [r for r in (*ROLES, "reference") if r in checkpoints]

    # the scratch dir lives for the whole audit (formats leave per-role artefacts in it for the report)
    with tempfile.TemporaryDirectory(prefix="auditq-") as scratch:
        compute = {"device": placement.device.split(":")[0], "dtype": placement.dtype_name,
                   "device_map": placement.device_map}
        ctx = FormatContext(workdir=Path(scratch), batch_size=request.batch_size,
                            calibration_texts=calibration_texts(request, suite), seed=request.seed,
                            max_batch_tokens=request.max_batch_tokens,
                            extra={"parity_texts": tuple(r.text for r in suite.forget.texts + suite.holdout.texts),
                                   "suite": suite,  # relearn:* trains on the suite's data
                                   "device": placement.device, "compute": compute})
        cache = request.cache.session(suite=suite, settings=settings, ctx=ctx,
                                      trust_remote_code=request.trust_remote_code) if request.cache else None
        if cache is not None:
            cache.exclude(request.extra_formats)  # external artifact files are not fingerprinted: never cached
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
        runs = execute(plan, checkpoints, ctx, suite, settings, timer=timer, advance=advance, events=events,
                       cache=cache, lookup=lookup)
        from auditq.audit.evidence import (  # weight-space evidence (auditq.audit.evidence)
            evidence_for_formats,
            through_cache,
        )

        with timer("weight_evidence"):
            evidence = evidence_for_formats(Path(scratch), [f.name for f in formats],
                                            {r: c.path for r, c in checkpoints.items()})
            evidence = {f.name: through_cache(cache, f, checkpoints, evidence.get(f.name)) for f in formats}
        details = row_details(formats, placement, cache.details() if cache is not None else None)
    from auditq.cache.store import row_provenance  # measured or cached (with the entry's sha256), per row

    provenance, cache_summary = row_provenance(cache, formats, checkpoints, [p.name for p in probes], request.cache)
    report = build_report(request, suite, formats, runs, checkpoints, created or _now(), details=details,
                          provenance=provenance, cache_summary=cache_summary, evidence=evidence)
    return AuditOutcome(report=report, runs=tuple(runs), timings=dict(timer.seconds))


def build_report(request: AuditRequest, suite: Suite, formats: list[Format], runs: list[RunRecord],
                 checkpoints: dict[str, Checkpoint], created: str,
                 details: dict[str, dict[str, Any]] | None = None,
                 provenance: dict[tuple[str, str], dict[str, str]] | None = None,
                 cache_summary: dict[str, Any] | None = None,
                 evidence: dict[str, dict[str, Any]] | None = None) -> AuditReport:
    """`details`: format name -> recorded details for formats served from the result cache;
    `evidence`: format name -> weight-space evidence (auditq.audit.evidence)."""
    evaluator = CheckEvaluator(request.config, request.seed, request.probes)  # unrequested checks: NOT_REQUESTED
    by_key = {(r.format, r.role): r for r in runs}
    reference_outputs = by_key.get((formats[0].name, "reference"))
    fp_samples: FormatSamples | None = None
    fp_records: dict[str, RunRecord] = {}
    fp_ref: dict[str, ProbeOutput] | None = None
    results: list[FormatResult] = []
    for index, fmt in enumerate(formats):
        records = {role: by_key[(fmt.name, role)] for role in ROLES if (fmt.name, role) in by_key}
        errors = {role: r.error for role, r in records.items() if r.error}
        # reference attack: --reference at fp, else the retrain model in this same format, never BASE
        ref, ref_note = _reference_for(reference_outputs, records)
        samples = {role: collect_samples(r.outputs, ref) for role, r in records.items() if not r.error}
        roles = {role: role_metrics(role, s) for role, s in samples.items()}
        roles.update({role: RoleMetrics(role=role, error=msg) for role, msg in errors.items()})
        roles = {role: replace(m, provenance=(provenance or {}).get((fmt.name, role), {})) for role, m in roles.items()}
        current = FormatSamples(samples.get("base"), samples.get("unlearned"), samples.get("retrain"))
        is_reference = index == 0
        row_error = errors.get("unlearned") or errors.get("base")
        if row_error:
            checks = evaluator.unknown_row(fmt.name, row_error, is_reference)
        else:
            fp_view = _fp_on_view(fmt, suite, request.seed, fp_samples, fp_records, fp_ref)
            checks = evaluator.evaluate(fmt.name, current, fp_view, is_reference)
        if is_reference and not row_error:
            fp_samples, fp_records, fp_ref = current, records, ref
        privleak = next((c.value for c in checks if c.check == "privleak"), None)
        fmt_details = {**((details or {}).get(fmt.name) or fmt.details()), "reference_attack": ref_note}
        results.append(FormatResult(format=fmt.name, details=fmt_details,
                                    roles=roles, checks=tuple(checks),
                                    privleak=privleak, error="; ".join(f"{k}: {v}" for k, v in errors.items()) or None,
                                    weight_evidence=_evidence_for(fmt, (evidence or {}).get(fmt.name))))
    from auditq.verdict.waivers import apply_waivers, today_utc

    results, waiver_report = apply_waivers(results, request.waivers, request.today or today_utc()) \
        if request.waivers else (results, ())
    all_checks = [c for r in results for c in r.checks]
    verdict, exit_code = gate(all_checks, request.allow_inconclusive, request.gate_policy)
    return AuditReport(
        schema_version=SCHEMA_VERSION,
        tool_version=__version__,
        created=created,
        arguments=request.arguments(),
        seed=request.seed,
        config=request.config.as_dict(),
        checkpoints={role: {"path": str(c.path), "files": c.file_hashes} for role, c in checkpoints.items()},
        suite={"path": str(suite.path), "name": suite.name, "sha256": suite.content_hash,
               "sizes": {s: {"texts": len(suite.split(s).texts), "qa": len(suite.split(s).qa)}
                         for s in ("forget", "retain", "holdout")}},
        sign_convention=SIGN_CONVENTION,
        formats=tuple(results),
        verdict=verdict,
        exit_code=exit_code,
        environment={"python": platform.python_version(), "torch": torch.__version__,
                     "torch_threads": str(torch.get_num_threads())},
        waivers=waiver_report,
        cache=dict(cache_summary or {}),
    )


def _reference_for(reference: RunRecord | None, records: dict[str, RunRecord]) -> tuple[dict | None, str]:
    """The outputs the ref attack compares against (see auditq.verdict.scoring.reference_role), and a note saying which."""
    available = {"reference"} if reference is not None and not reference.error else set()
    if "retrain" in records and not records["retrain"].error:
        available.add("retrain")
    role = reference_role(available)
    if role == "reference":
        return reference.outputs, "against the --reference model at full precision"
    if role == "retrain":
        return records["retrain"].outputs, "against the retrain model in this format"
    return None, NO_REFERENCE


def _evidence_for(fmt: Format, found: dict[str, Any] | None) -> dict[str, Any] | None:
    if found is not None or not getattr(fmt, "has_codes", False):
        return found
    return {"note": "not recorded: no integer codes were read for BASE or UNLEARNED in this run (a failed row, a "
                    "float-only file, or rows served from the result cache before weight-space evidence existed)"}


def _fp_on_view(fmt: Format, suite: Suite, seed: int, fp_samples: FormatSamples | None,
                fp_records: dict[str, RunRecord], fp_ref: dict[str, ProbeOutput] | None) -> FormatSamples | None:
    """The fp row restricted to the records `fmt` scores, so recovery pairs the same samples."""
    try:
        view = fmt.suite_view(suite, seed)
    except Exception:  # noqa: BLE001 - the row itself reports what went wrong
        return fp_samples
    if view is suite or fp_samples is None:
        return fp_samples
    from auditq.formats.views import restrict_outputs

    ref_out = restrict_outputs(fp_ref, view) if fp_ref is not None else None
    picked = {role: collect_samples(restrict_outputs(r.outputs, view), ref_out)
              for role, r in fp_records.items() if not r.error}
    return FormatSamples(picked.get("base"), picked.get("unlearned"), picked.get("retrain"))


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
