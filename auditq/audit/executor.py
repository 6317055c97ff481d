"""Run an AuditPlan on this machine, one checkpoint resident at a time.

BASE is loaded, measured in every format, and released; then UNLEARNED, RETRAIN and the reference
model. Formats that rewrite weights in place put them back from the checkpoint's files
(auditq.checkpoint.restore), so peak memory is about one model whatever the number of formats and
checkpoints. Every measured output is stored in the result cache as soon as it exists.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping

from auditq.audit.plan import AuditPlan, Lookup, Step
from auditq.audit.records import RunRecord, one_line
from auditq.checkpoint.load import Checkpoint
from auditq.checkpoint.memory import release_free_memory
from auditq.errors import InputError
from auditq.formats import FormatContext
from auditq.probes import ProbeOutput, ProbeSettings
from auditq.suite.records import Suite


def execute(plan: AuditPlan, checkpoints: Mapping[str, Checkpoint], ctx: FormatContext, suite: Suite,
            settings: ProbeSettings, *, timer, advance: Callable[[int], None], events, cache=None,
            lookup: Lookup | None = None) -> list:
    """Measure every step of the plan; a role's weights are read only if one of its steps needs them.

    `lookup` (the plan's cache lookup) serves deferred steps from what earlier steps stored.
    """
    runs = []
    for role in plan.roles():
        checkpoint = checkpoints[role]
        try:
            for step in resident_first(plan.steps_for(role)):
                if step.deferred and lookup is not None:
                    with timer("cache"):
                        found = dict(lookup(step.format, role, step.to_measure))
                    step = replace(step, cached=found, deferred=False,
                                   to_measure=tuple(p for p in step.to_measure if p.name not in found))
                runs.append(measure_step(step, checkpoint, ctx, suite, settings, timer=timer, advance=advance,
                                         events=events, cache=cache))
        finally:
            with timer("release"):
                checkpoint.release()  # the next checkpoint is loaded into the memory this one held
                release_free_memory()
    return runs


def resident_first(steps) -> list[Step]:
    """The role's steps, formats that compute on the resident copy first (stable), then the engines
    that free it to build a model of their own (auditq.formats.resident): no reload in between."""
    return sorted(steps, key=lambda step: not getattr(step.format, "needs_resident", True))


def measure_step(step: Step, checkpoint: Checkpoint, ctx: FormatContext, suite: Suite, settings: ProbeSettings,
                 *, timer, advance: Callable[[int], None], events, cache=None):
    """One checkpoint in one format: the cached outputs plus the probes measured now (or why not)."""

    fmt, role = step.format, step.role
    outputs: dict[str, ProbeOutput] = dict(step.cached)
    events.note(f"{fmt.name}: {role}")
    suite = fmt.suite_view(suite, ctx.seed)  # relearn:forget scores only the forget half it did not train on
    if not step.to_measure:
        return RunRecord(fmt.name, role, outputs)
    probes = list(step.to_measure)
    if not checkpoint.loaded and getattr(fmt, "needs_resident", True):  # engines with a model of their own: no
        with timer("load"):
            events.note(f"loading {role} checkpoint {checkpoint.path}")
            checkpoint.model  # noqa: B018 - read the weights now, timed as loading
    ctx = replace(ctx, role=role)
    try:
        with timer(f"quantize:{fmt.name}"):
            applied = fmt.apply(checkpoint, ctx)
            lm = applied.__enter__()
        try:
            for probe in probes:
                with timer(f"probe:{probe.name}"):
                    outputs[probe.name] = probe.run(lm, checkpoint.tokenizer, suite, settings)
                if cache is not None:
                    cache.store(fmt, checkpoint, probe.name, outputs[probe.name])
                advance(probe.size(suite))
                release_free_memory()  # the probe's scratch goes back to the OS, not to the next stage's peak
        finally:
            applied.__exit__(None, None, None)
            lm.close()
            del lm, applied
            release_free_memory()
        if cache is not None:
            cache.store_details(fmt, checkpoint)
    except InputError:
        raise
    except Exception as exc:  # a crashing format or probe becomes an UNKNOWN row (exit 3), never a traceback
        from auditq.interrupt import interrupted

        if interrupted():  # Ctrl-C that surfaced as another exception (e.g. inside an import): stop, exit 130
            raise
        advance(sum(p.size(suite) for p in probes if p.name not in outputs))
        return RunRecord(fmt.name, role, outputs, error=one_line(exc))
    return RunRecord(fmt.name, role, outputs)


def row_details(formats, placement, cached: Mapping[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Format name -> details for the report row: the format's own (or the cache's) plus device and dtype.

    A format that reports its own device or dtype (GPTQ on CUDA computes in float16) keeps it.
    """
    out: dict[str, dict[str, Any]] = {}
    for fmt in formats:
        own = (cached or {}).get(fmt.name)
        if own is None:
            try:
                own = fmt.details()
            except Exception as exc:  # noqa: BLE001 - details are informational
                own = {"engine": getattr(fmt, "engine", ""), "details_error": str(exc)}
        if placement is None:
            out[fmt.name] = dict(own)
        elif getattr(fmt, "engine", "") in IN_PLACE_ENGINES:  # computed on the loaded checkpoint itself
            out[fmt.name] = {**placement.row_fields(), **own}
        else:  # an engine that builds its own model decides where it runs: say only what it reported
            out[fmt.name] = {"device": own.get("device", "engine-managed (see engine)"),
                             "dtype": own.get("compute_dtype", own.get("dtype", "engine-managed (see engine)")), **own}
    return out


#: engines that compute with the checkpoint's own loaded model (so with the audit's device and dtype)
IN_PLACE_ENGINES = frozenset({"torch", "auditq-rtn"})
