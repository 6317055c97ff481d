"""Assemble the report: per-format rows (role metrics, checks, weight-space evidence), waivers, the gate."""

from __future__ import annotations

import platform
from dataclasses import dataclass, replace
from typing import Any

import torch

from auditq import __version__
from auditq.verdict.policy import gate
from auditq.audit.records import RunRecord
from auditq.audit.request import ROLES, AuditRequest
from auditq.checkpoint.load import Checkpoint
from auditq.formats import Format
from auditq.probes import ProbeOutput
from auditq.result.model import SCHEMA_VERSION, SIGN_CONVENTION, AuditReport, FormatResult, RoleMetrics
from auditq.suite.records import Suite
from auditq.verdict.degenerate import IDENTICAL, RETRAIN_IDENTICAL, identical_weights, mark_identical, never_pass
from auditq.verdict.policy import CheckEvaluator, FormatSamples
from auditq.verdict.scoring import NO_REFERENCE, collect_samples, reference_role, role_metrics


@dataclass(frozen=True)
class RowInputs:
    """What the run measured besides the probe outputs, by format name (all optional)."""

    #: format name -> recorded details for formats served from the result cache
    details: dict[str, dict[str, Any]] | None = None
    #: (format, role) -> probe -> "measured" | "cached:<sha256>"
    provenance: dict[tuple[str, str], dict[str, str]] | None = None
    cache_summary: dict[str, Any] | None = None
    #: format name -> weight-space evidence (auditq.audit.evidence)
    evidence: dict[str, dict[str, Any]] | None = None


@dataclass
class _FpRow:
    """The reference (first, full-precision) row, kept for recovery checks of the rows after it."""

    samples: FormatSamples | None = None
    records: dict[str, RunRecord] | None = None
    ref: dict[str, ProbeOutput] | None = None


def build_report(request: AuditRequest, formats: list[Format], runs: list[RunRecord],
                 checkpoints: dict[str, Checkpoint], created: str, inputs: RowInputs | None = None) -> AuditReport:
    """The AuditReport: one FormatResult per format (the first is the reference row), waivers, the gate."""
    inputs = inputs or RowInputs()
    options = request.options
    evaluator = CheckEvaluator(request.config, options.seed, options.probes)
    by_key = {(r.format, r.role): r for r in runs}
    reference_outputs = by_key.get((formats[0].name, "reference"))
    fp = _FpRow()
    results = [_format_row(request, evaluator, fmt, index == 0, by_key, reference_outputs, fp, inputs)
               for index, fmt in enumerate(formats)]
    from auditq.verdict.waivers import apply_waivers, today_utc

    results, waiver_report = apply_waivers(results, request.waivers, request.today or today_utc()) \
        if request.waivers else (results, ())
    results, identical = _degenerate(results, checkpoints)
    from auditq.audit.durability import annotate

    results = annotate(list(results), options.seed)  # --seeds: per-seed verdicts and pass rate of repeated rows
    verdict, exit_code = gate([c for r in results for c in r.checks], options.allow_inconclusive, request.fail_on)
    if identical:
        verdict, exit_code = never_pass(verdict, exit_code, request.fail_on, options.allow_inconclusive)
    suite = request.suite
    return AuditReport(
        schema_version=SCHEMA_VERSION,
        tool_version=__version__,
        created=created,
        arguments=request.arguments(),
        seed=options.seed,
        config=request.config.as_dict(),
        checkpoints={role: {"path": str(c.path), "files": c.file_hashes,
                            **({"identical_to_base": True} if role in identical else {})}
                     for role, c in checkpoints.items()},
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
        cache=dict(inputs.cache_summary or {}),
    )


def _degenerate(results: list[FormatResult], checkpoints: dict[str, Checkpoint]) -> tuple[list[FormatResult], list[str]]:
    """Every row marked (auditq.verdict.degenerate) when UNLEARNED's or RETRAIN's weight files are BASE's; never a
    PASS. Returns the rows and the roles found identical to BASE."""
    base = checkpoints.get("base")
    roles = [role for role in ("unlearned", "retrain") if base is not None and role in checkpoints
             and identical_weights(base.file_hashes, checkpoints[role].file_hashes)]
    for role in roles:
        reason = IDENTICAL if role == "unlearned" else RETRAIN_IDENTICAL
        results = [replace(r, checks=tuple(mark_identical(c, reason, role) for c in r.checks)) for r in results]
    return results, roles


def _format_row(request: AuditRequest, evaluator: CheckEvaluator, fmt: Format, is_reference: bool,
                by_key: dict[tuple[str, str], RunRecord], reference_outputs: RunRecord | None, fp: _FpRow,
                inputs: RowInputs) -> FormatResult:
    """One format's row; the reference row is remembered in `fp` for the rows after it."""
    records = {role: by_key[(fmt.name, role)] for role in ROLES if (fmt.name, role) in by_key}
    errors = {role: r.error for role, r in records.items() if r.error}
    # reference attack: --reference at fp, else the retrain model in this same format, never BASE
    ref, ref_note = _reference_for(reference_outputs, records)
    samples = {role: collect_samples(r.outputs, ref) for role, r in records.items() if not r.error}
    roles = {role: role_metrics(role, s) for role, s in samples.items()}
    roles.update({role: RoleMetrics(role=role, error=msg) for role, msg in errors.items()})
    roles = {role: replace(m, provenance=(inputs.provenance or {}).get((fmt.name, role), {}))
             for role, m in roles.items()}
    current = FormatSamples(samples.get("base"), samples.get("unlearned"), samples.get("retrain"))
    row_error = errors.get("unlearned") or errors.get("base")
    if row_error:
        checks = evaluator.unknown_row(fmt.name, row_error, is_reference)
    else:
        fp_view = _fp_on_view(fmt, request.suite, request.options.seed, fp)
        checks = evaluator.evaluate(fmt.name, current, fp_view, is_reference)
    if is_reference and not row_error:
        fp.samples, fp.records, fp.ref = current, records, ref
    privleak = next((c.value for c in checks if c.check == "privleak"), None)
    fmt_details = {**((inputs.details or {}).get(fmt.name) or fmt.details()), "reference_attack": ref_note}
    return FormatResult(format=fmt.name, details=fmt_details, roles=roles, checks=tuple(checks), privleak=privleak,
                        error="; ".join(f"{k}: {v}" for k, v in errors.items()) or None,
                        weight_evidence=_evidence_for(fmt, (inputs.evidence or {}).get(fmt.name),
                                                      _cached_roles(inputs, fmt.name)))


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


def _cached_roles(inputs: RowInputs, fmt_name: str) -> list[str]:
    """BASE / UNLEARNED when every probe of its row in this format came from the result cache (apply never ran)."""
    out = []
    for role in ("base", "unlearned"):
        sources = (inputs.provenance or {}).get((fmt_name, role)) or {}
        if sources and all(str(v).startswith("cached") for v in sources.values()):
            out.append(role)
    return out


def _evidence_for(fmt: Format, found: dict[str, Any] | None, cached_roles: list[str]) -> dict[str, Any] | None:
    """The evidence, or a note that says truthfully why there is none."""
    if found is not None or not getattr(fmt, "has_codes", False):
        return found
    if cached_roles:
        names = " and ".join(r.upper() for r in cached_roles)
        return {"note": f"not recorded: {names} in this format came from the result cache, so this run read no "
                        "integer codes for it, and no earlier run recorded evidence for this BASE / UNLEARNED pair "
                        "(run with --no-cache to record it)"}
    return {"note": "not recorded: no integer codes were read for BASE or UNLEARNED in this run (a failed row or a "
                    "file that holds floats only)"}


def _fp_on_view(fmt: Format, suite: Suite, seed: int, fp: _FpRow) -> FormatSamples | None:
    """The fp row restricted to the records `fmt` scores, so recovery pairs the same samples."""
    try:
        view = fmt.suite_view(suite, seed)
    except Exception:  # noqa: BLE001 - the row itself reports what went wrong
        return fp.samples
    if view is suite or fp.samples is None:
        return fp.samples
    from auditq.formats.views import restrict_outputs

    ref_out = restrict_outputs(fp.ref, view) if fp.ref is not None else None
    picked = {role: collect_samples(restrict_outputs(r.outputs, view), ref_out)
              for role, r in (fp.records or {}).items() if not r.error}
    return FormatSamples(picked.get("base"), picked.get("unlearned"), picked.get("retrain"))
