"""`auditq remediate`: re-unlearn from the original model, write a checkpoint atomically, re-check it.

Order of work (every input is validated before any weights are read, and nothing is written
before training has finished):

1. validate BASE, --retrain, the suite, the plan and --out (exit 2, one line);
2. load BASE, compute SURE's saliency at θ_o and its mask, print the saliency map and the plan;
   --dry-run stops here (exit 0, nothing written);
3. unlearn in memory (rich progress; measured stop criterion);
4. stage: save the checkpoint into a temp dir beside --out, compare its tensors with BASE's bit
   for bit (nothing outside the mask may differ), run `auditq check BASE STAGED` with the same
   suite and formats (reports into STAGED/auditq-recheck/), write STAGED/auditq-remediation.json
   with the verdict, then rename STAGED onto --out;
5. exit with the re-check's code.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rich.console import Console

import auditq
from auditq.errors import InputError, MeasurementError
from auditq.remediate.console import baseline_line, print_changes, print_plan, print_saliency
from auditq.remediate.output import (
    RECORD_NAME,
    commit,
    rtn_code_changes,
    save_checkpoint,
    staged_dir,
    weight_diff,
    write_record,
)
from auditq.remediate.recheck import RECHECK_DIR, read_recheck, recheck, recheck_options



@dataclass(frozen=True)
class RemediateOptions:
    """`auditq remediate` as given on the command line, built once by the CLI and validated once
    (auditq.remediate.validate); the re-check's CheckOptions are derived from it (`recheck_options`)."""

    base: Path
    suite: Optional[Path]
    out: Optional[Path]
    method: str = "sure"
    forget_loss: Optional[str] = None
    retain_loss: Optional[str] = None
    preset: str = "auto"
    lr: Optional[float] = None
    steps: Optional[int] = None
    percentile: Optional[float] = None
    granularity: Optional[str] = None
    check_every: Optional[int] = None
    target: Optional[float] = None
    privleak_target: Optional[float] = None
    retain_weight: Optional[float] = None
    batch_size: Optional[int] = None
    seed: int = 0
    formats: tuple[str, ...] = ("fp", "rtn8", "rtn4")
    retrain: Optional[Path] = None
    force: bool = False
    dry_run: bool = False
    config_file: Optional[Path] = None
    thresholds: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    allow_inconclusive: bool = False
    trust_remote_code: bool = False
    quiet: bool = False
    #: --device / --dtype / --device-map for training and the re-check (auditq.checkpoint.placement.ComputeRequest)
    compute: object = None
    #: torch CPU threads (the CLI sets them before training)
    threads: Optional[int] = None
    #: the re-check's executor (auditq.audit.executors): local, or ray at --ray-address
    executor: str = "local"
    ray_address: Optional[str] = None
    ray_timeout: float = 6 * 3600.0


def make_plan(opts: RemediateOptions, n_params: int):
    from auditq.remediate.sure import pick_preset, with_overrides

    try:
        preset = pick_preset(opts.preset, n_params)
        target = opts.target
        return with_overrides(preset, method=opts.method, forget_loss=opts.forget_loss, retain_loss=opts.retain_loss,
                              lr=opts.lr, steps=opts.steps, percentile=opts.percentile, granularity=opts.granularity,
                              check_every=opts.check_every, retain_weight=opts.retain_weight,
                              batch_size=opts.batch_size, seed=opts.seed, target=target,
                              privleak_target=opts.privleak_target)
    except ValueError as exc:
        raise InputError(str(exc)) from None


@dataclass
class _Session:
    """One remediation, filled in as it goes: the loaded original, the plan, the stop rule, the mask."""

    suite: Any
    suite_dir: Path
    checkpoint: Any = None
    model: Any = None
    tokenizer: Any = None
    n_params: int = 0
    base_hashes: Optional[dict] = None
    plan: Any = None
    settings: Any = None
    gate: Any = None
    reference_auc: float = 0.5
    base_measure: Any = None
    mask: Any = None


def run_remediate(opts: RemediateOptions, console: Console, err: Console,
                  validated: Optional[tuple[object, Path]] = None) -> int:
    """The whole flow; `validated`: what auditq.remediate.validate.validate_inputs returned (the CLI runs it
    before torch is imported), else it runs here."""
    from auditq.remediate.validate import validate_after_imports, validate_inputs

    suite, suite_dir = validated if validated is not None else validate_inputs(opts)
    validate_after_imports(opts, suite)  # before any weights load: transformers would random-initialise a missing tensor
    make_plan(opts, 0)  # a bad hyper-parameter is an input error before any training too
    session = _Session(suite=suite, suite_dir=Path(suite_dir))
    placement = _load_original(opts, session, err)
    started = time.perf_counter()
    _stop_rule_and_mask(opts, session, placement, console)
    if opts.dry_run:
        console.print("[bold]--dry-run[/]: nothing trained, nothing written")
        return 0
    result = _unlearn(opts, session, console, err)
    code, recheck_verdict, final_dir = _stage_and_recheck(opts, session, result, console, err)
    console.print(f"[bold]wrote[/] {final_dir} (safetensors, config, tokenizer, {RECORD_NAME}, {RECHECK_DIR}/) "
                  f"in {time.perf_counter() - started:.0f}s; re-check verdict [bold]{recheck_verdict}[/] "
                  f"(exit {code})", highlight=False)
    return code


def _load_original(opts: RemediateOptions, session: _Session, err: Console):
    """BASE's fingerprint, its placement (exit 2 before loading when it cannot fit), the model, the plan and the
    probe settings the stop rule measures with (the re-check's: the suite's defaults)."""
    from auditq.audit.request import probe_settings
    from auditq.checkpoint.load import fingerprint, load_checkpoint
    from auditq.checkpoint.placement import ComputeRequest, resolve

    session.base_hashes = fingerprint(opts.base)
    placement = resolve(opts.compute or ComputeRequest(), opts.base)
    if not opts.quiet:
        err.print(f"[dim]{placement.estimate_line()}[/]", highlight=False)
        if placement.note:
            err.print(f"[dim]{placement.note}[/]", highlight=False)
    checkpoint = load_checkpoint(opts.base, "base", trust_remote_code=opts.trust_remote_code, dtype=placement.dtype,
                                 device=placement.device, device_map=placement.device_map)
    session.checkpoint = checkpoint
    session.model, session.tokenizer = checkpoint.model, checkpoint.tokenizer
    session.n_params = sum(p.numel() for p in session.model.parameters())
    session.plan = make_plan(opts, session.n_params)
    session.settings = probe_settings(session.suite)
    return placement


def _stop_rule_and_mask(opts: RemediateOptions, session: _Session, placement, console: Console) -> None:
    """Measure the original (and --retrain) at fp, derive the stop rule from the re-check's gate, compute SURE's
    mask at θ_o, and print the saliency map and the plan."""
    from auditq.checkpoint.load import check_compatible, load_checkpoint
    from auditq.remediate.sure import Monitor, plan_mask
    from auditq.verdict.config import load_config

    config = load_config(Path.cwd(), opts.config_file, list(opts.thresholds), list(opts.severities))
    monitor = Monitor(session.tokenizer, session.suite, session.settings)
    base_measure = monitor.measure(session.model, 0)
    retrain_measure = None
    if opts.retrain is not None:
        reference = load_checkpoint(opts.retrain, "retrain", trust_remote_code=opts.trust_remote_code,
                                    dtype=placement.dtype, device=placement.device, device_map=placement.device_map)
        check_compatible(session.checkpoint, reference, "retrain")
        retrain_measure = monitor.measure(reference.model, 0)
        del reference
    session.plan, session.gate, session.reference_auc = stop_rule(session.plan, config, base_measure, retrain_measure)
    session.base_measure = base_measure
    console.print(baseline_line(base_measure, retrain_measure), highlight=False)
    session.mask = plan_mask(session.model, session.tokenizer, session.suite, session.plan)
    print_saliency(console, session.mask)
    print_plan(console, session.plan, session.mask, session.gate, session.n_params, opts.retrain, opts.formats,
               session.reference_auc)


def _unlearn(opts: RemediateOptions, session: _Session, console: Console, err: Console):
    """Train in memory, check nothing outside the mask moved, print where it stopped."""
    s = session
    originals = {name: p.detach().clone() for name, p in s.model.named_parameters()}
    result = _train(s.model, s.tokenizer, s.suite, s.plan, s.settings, s.mask, s.gate, s.base_measure,
                    s.reference_auc, err, opts.quiet)
    _verify_in_memory(s.model, originals, s.mask)
    del originals
    final, base = result.final, s.base_measure
    console.print(f"[bold]trained[/] {result.unlearn.steps} steps in {result.seconds:.1f}s: {result.stop_reason}. "
                  f"At fp: forget KnowMem {final.knowmem_forget:.3f} (base {base.knowmem_forget:.3f}), "
                  f"forget VerbMem {final.verbmem_forget:.3f} (base {base.verbmem_forget:.3f}), "
                  f"retain KnowMem {final.knowmem_retain:.3f} (base {base.knowmem_retain:.3f})",
                  highlight=False)
    return result


def _stage_and_recheck(opts: RemediateOptions, session: _Session, result, console: Console,
                       err: Console) -> tuple[int, Any, Path]:
    """Save into a staged dir, compare with BASE bit for bit, re-check it, write the record, rename onto --out."""
    session.model.eval()
    with staged_dir(opts.out) as stage:
        save_checkpoint(session.model, session.tokenizer, opts.base, stage)
        diff = weight_diff(opts.base, stage)
        outside = _changes_outside_mask(opts.base, stage, diff, session.mask)
        if outside:
            raise MeasurementError(f"internal error: parameters outside the mask changed: {', '.join(outside[:5])}")
        shifts = rtn_code_changes(opts.base, stage, sorted(diff.changed), bits=4)
        print_changes(console, diff, shifts)
        code = recheck(recheck_options(opts, stage, session.suite_dir), console, err)
        rechecked = read_recheck(stage / RECHECK_DIR / "report.json")
        write_record(stage, _record(opts, session, result, diff, shifts, code, rechecked, stage))
        final_dir = commit(stage, opts.out)
    return code, rechecked.get("verdict"), final_dir


def _record(opts: RemediateOptions, session: _Session, result, diff, shifts, code: int, recheck: dict,
            stage: Path) -> dict:
    """auditq-remediation.json: inputs, hyper-parameters, mask, training, what changed, the re-check."""
    plan, mask, gate = session.plan, session.mask, session.gate
    return {
        "auditq_version": auditq.__version__,
        "created": recheck.get("created"),
        "base": {"path": str(opts.base.resolve()), "files_sha256": session.base_hashes},
        "suite": {"path": str(Path(session.suite_dir).resolve()), "sha256": session.suite.content_hash},
        "retrain": str(opts.retrain.resolve()) if opts.retrain else None,
        "method": plan.method,
        "hyperparameters": plan.as_dict(),
        "seed": plan.seed,
        "mask": {"granularity": mask.granularity, "percentile": mask.percentile,
                 "gamma": mask.gamma if math.isfinite(mask.gamma) else None,
                 "modules": mask.selected_modules(), "rows": mask.selected_rows(),
                 "trainable_parameters": mask.trainable_count(), "total_parameters": session.n_params},
        "saliency": {name: score for name, score in sorted(mask.module_scores.items())} if mask.module_scores else None,
        "training": {"steps": result.unlearn.steps, "stop_reason": result.stop_reason,
                     "stop_rule": {"memorisation": gate.describe(), "reference_auc": session.reference_auc,
                                   "privleak_target": plan.privleak_target,
                                   "privleak_ceiling": plan.privleak_ceiling},
                     "focus": [{"step": step, "forget_texts": n} for step, n in result.focus_log],
                     "seconds": round(result.seconds, 2), "saliency_seconds": round(result.saliency_seconds, 2),
                     "base_fp": _measure_dict(session.base_measure),
                     "history": [_measure_dict(m) for m in result.history],
                     "final_retention_fp": result.final.retention(session.base_measure)},
        "changed": {"parameters": diff.changed_entries, "tensors": {k: v for k, v in sorted(diff.changed.items())},
                    "total_parameters": diff.total_entries, "int4_rtn": shifts},
        "recheck": {"formats": list(opts.formats), "exit_code": code, "verdict": recheck.get("verdict"),
                    "checks": recheck.get("checks"), "report": f"{RECHECK_DIR}/report.json",
                    "checked_path": str(stage)},
    }


def _measure_dict(m) -> dict:
    return {"step": m.step, "knowmem_forget": m.knowmem_forget, "verbmem_forget": m.verbmem_forget,
            "knowmem_retain": m.knowmem_retain, "mia_auc": m.mia_auc}


def stop_rule(plan, config, base, retrain):
    """The stop rule derived from the re-check's own gate, so that training aims inside it.

    Memorisation: `ForgetGate` (the gate's bootstrap test at fp, `plan.headroom` tighter, or
    --target). Membership inference: the reference AUC is the retrain model's at fp, else 0.5 (as the
    privleak check uses), and the over-forgetting guard is the privleak threshold (MUSE's sign).
    """
    from dataclasses import replace

    from auditq.remediate.stop import ForgetGate

    gate = ForgetGate(config, plan.seed, base, retrain, plan.target, plan.headroom)
    reference_auc = retrain.mia_auc if retrain is not None and retrain.mia_auc is not None else 0.5
    plan = replace(plan, privleak_ceiling=config.checks["privleak"].threshold)
    return plan, gate, reference_auc


def _train(model, tokenizer, suite, plan, settings, mask, gate, base_measure, reference_auc, err: Console,
           quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from auditq.remediate.sure import remediate

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[status]}"), console=err, transient=True, disable=quiet)
    task = progress.add_task(f"unlearning ({plan.method})", total=plan.steps, status="")
    state = {"last": ""}

    def on_step(log) -> None:
        progress.update(task, completed=log.step,
                        status=f"loss {log.loss:.3f} (forget {log.forget_loss:.3f}, retain {log.retain_loss:.3f}) "
                               f"{state['last']}")

    def on_measure(m) -> None:
        from auditq.remediate.sure import privleak_estimate

        leak = privleak_estimate(m.mia_auc, reference_auc)
        if m.knowmem_forget is None:
            state["last"] = f"| step {m.step}: PrivLeak {leak:+.1f}%"
            if not quiet:
                err.print(f"[dim]  step {m.step}: Min-K% AUC {m.mia_auc:.3f}, PrivLeak {leak:+.1f}%[/]", highlight=False)
            return
        r = m.retention(base_measure)
        state["last"] = (f"| step {m.step}: forget KnowMem {r['knowmem']:.2f}, VerbMem {r['verbmem']:.2f}, "
                         f"utility {r['utility']:.2f}")
        if not quiet:
            err.print(f"[dim]  step {m.step}: forget retention KnowMem {r['knowmem']:.3f}, VerbMem {r['verbmem']:.3f}; "
                      f"retain KnowMem {r['utility']:.3f} of base"
                      + (f"; Min-K% AUC {m.mia_auc:.3f}, PrivLeak {leak:+.1f}%" if m.mia_auc is not None else "")
                      + "[/]", highlight=False)

    with progress:
        return remediate(model, tokenizer, suite, plan, settings, mask=mask, base_measurement=base_measure,
                         reference_auc=reference_auc, gate=gate, on_step=on_step, on_measure=on_measure)


def _verify_in_memory(model, originals, mask) -> None:
    """Every entry outside the mask must be bit-identical to θ_o (defence in depth; unlearn() enforces it)."""
    import torch

    for name, param in model.named_parameters():
        m = mask.trainable.get(name, False)
        frozen = ~m if isinstance(m, torch.Tensor) else (None if m else True)
        if frozen is None:
            continue
        before, after = originals[name], param.detach()
        if frozen is not True:
            before, after = before[frozen], after[frozen]
        same = before.shape == after.shape and torch.equal(_bits(before), _bits(after))
        if not same:
            raise MeasurementError(f"internal error: {name} changed outside the saliency mask")


def _bits(t):
    """A tensor's raw bytes (so NaN == NaN and -0.0 != 0.0 compare as stored)."""
    import torch

    return t.contiguous().reshape(-1).view(torch.uint8)


def _changes_outside_mask(base_dir: Path, new_dir: Path, diff, mask) -> list[str]:
    """Stored tensors (or, for row masks, frozen rows) that differ from BASE though the mask froze them."""
    from auditq.remediate.output import read_tensors

    bad = [name for name in diff.changed if mask.trainable.get(name, False) is False] + list(diff.missing) \
        + list(diff.extra)
    partial = [name for name in diff.changed if not isinstance(mask.trainable.get(name, False), bool)]
    if partial:
        base, new = read_tensors(base_dir), read_tensors(new_dir)
        for name in partial:
            frozen = ~mask.trainable[name].to(base[name].device)
            if not _bits(base[name][frozen]).equal(_bits(new[name][frozen])):
                bad.append(f"{name} (frozen rows)")
    return bad


