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
from typing import Callable, Optional

from rich.console import Console
from rich.table import Table

import auditq
from auditq.errors import InputError, MeasurementError
from auditq.remediate.output import (
    RECORD_NAME,
    commit,
    rtn_code_changes,
    save_checkpoint,
    staged_dir,
    weight_diff,
    write_record,
)

RECHECK_DIR = "auditq-recheck"


@dataclass
class RemediateOptions:
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


def _short(name: str) -> str:
    return name.removesuffix(".weight").replace("model.layers.", "layers.")


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


def print_saliency(console: Console, mask, limit: int = 12) -> None:
    """The saliency map: every module's score (top `limit` and every selected one), γ, and the mask."""
    selected = set(mask.selected_modules())
    scores = mask.module_scores or {name: float("nan") for name in mask.shapes}
    table = Table(title=f"saliency ‖∇ L_forget‖ at θ_o ({mask.granularity}; γ = p{mask.percentile:g} = {mask.gamma:.4g})",
                  show_lines=False)
    table.add_column("module")
    table.add_column("score", justify="right")
    table.add_column("in mask", justify="center")
    table.add_column("rows", justify="right")
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    rows = mask.selected_rows()
    shown = [kv for i, kv in enumerate(ranked) if i < limit or kv[0] in selected]
    for name, score in shown:
        table.add_row(_short(name), f"{score:.4g}", "[green]yes[/]" if name in selected else "",
                      f"{rows.get(name, 0)}/{mask.shapes[name][0]}" if name in selected else "")
    if len(ranked) > len(shown):
        table.add_row(f"… {len(ranked) - len(shown)} more modules below", "", "", "")
    console.print(table)


def print_plan(console: Console, plan, mask, gate, n_params: int, retrain: Optional[Path], formats,
               reference_auc: float = 0.5) -> None:
    trainable = mask.trainable_count()
    what = ("SURE: only the salient weights above move" if plan.uses_mask
            else "no saliency mask: every nn.Linear weight may move")
    console.print(
        f"[bold]plan[/] ({plan.preset} preset): {plan.method.upper()} — forget loss {plan.effective_forget_loss.upper()}"
        f"{' (β = %g)' % plan.beta if plan.effective_forget_loss == 'npo' else ''} + "
        f"{plan.retain_weight:g}·{plan.retain_loss.upper()} on retain, AdamW lr {plan.lr:g}, batch {plan.batch_size}, "
        f"at most {plan.steps} steps, seed {plan.seed}\n"
        f"  {what}: {trainable:,} of {n_params:,} parameters ({100 * trainable / max(1, n_params):.2f}%) in "
        f"{len(mask.selected_modules())} tensor(s); embeddings, norms and every other weight stay bit-identical\n"
        f"  stop: every {plan.check_every} steps measure forget KnowMem and VerbMem retention (unlearned / "
        f"original) at fp; stop once {gate.describe()}"
        + (f"; then measure Min-K% AUC (forget vs holdout) after every step and stop once the estimated PrivLeak "
           f"(MUSE's sign, negative = under-unlearned) against AUC_ref {reference_auc:.3f} is ≥ "
           f"{plan.privleak_target:+g}% (from then on, while a retention is unmet, the forget loss uses only "
           f"the forget records still above the non-member floor)" if math.isfinite(plan.privleak_target)
           else "") + (f"; or once it rises to {plan.privleak_ceiling:+g}% (over-forgetting)"
                       if math.isfinite(plan.privleak_target) else "") + f"; or after {plan.steps} steps\n"
        f"  then re-check against BASE in {', '.join(formats)}"
        + (f" with retrain {retrain}" if retrain else ""), highlight=False)


def run_remediate(opts: RemediateOptions, console: Console, err: Console,
                  run_check: Callable[..., int], validated: Optional[tuple[object, Path]] = None) -> int:
    """The whole flow; `validated`: what auditq.remediate.validate.validate_inputs returned (the CLI runs it
    before torch is imported), else it runs here."""
    from auditq.audit.pipeline import AuditRequest, probe_settings
    from auditq.checkpoint.load import check_compatible, fingerprint, load_checkpoint
    from auditq.remediate.sure import Monitor, plan_mask
    from auditq.remediate.validate import validate_after_imports, validate_inputs
    from auditq.verdict.config import load_config

    suite, suite_dir = validated if validated is not None else validate_inputs(opts)
    validate_after_imports(opts, suite)  # before any weights load: transformers would random-initialise a missing tensor
    make_plan(opts, 0)  # a bad hyper-parameter is an input error before any training too
    base_hashes = fingerprint(opts.base)
    from auditq.checkpoint.placement import ComputeRequest, resolve

    placement = resolve(opts.compute or ComputeRequest(), opts.base)  # exit 2 before loading when it cannot fit
    if not opts.quiet:
        err.print(f"[dim]{placement.estimate_line()}[/]", highlight=False)
        if placement.note:
            err.print(f"[dim]{placement.note}[/]", highlight=False)
    checkpoint = load_checkpoint(opts.base, "base", trust_remote_code=opts.trust_remote_code, dtype=placement.dtype,
                                 device=placement.device, device_map=placement.device_map)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    n_params = sum(p.numel() for p in model.parameters())
    plan = make_plan(opts, n_params)
    settings = probe_settings(AuditRequest(base=opts.base, unlearned=opts.base, suite=suite_dir), suite)
    config = load_config(Path.cwd(), opts.config_file, list(opts.thresholds), list(opts.severities))

    started = time.perf_counter()
    monitor = Monitor(tokenizer, suite, settings)
    base_measure = monitor.measure(model, 0)
    retrain_measure = None
    if opts.retrain is not None:
        reference = load_checkpoint(opts.retrain, "retrain", trust_remote_code=opts.trust_remote_code,
                                    dtype=placement.dtype, device=placement.device, device_map=placement.device_map)
        check_compatible(checkpoint, reference, "retrain")
        retrain_measure = monitor.measure(reference.model, 0)
        del reference
    plan, gate, reference_auc = stop_rule(plan, config, base_measure, retrain_measure)
    console.print(_baseline_line(base_measure, retrain_measure), highlight=False)
    mask = plan_mask(model, tokenizer, suite, plan)
    print_saliency(console, mask)
    print_plan(console, plan, mask, gate, n_params, opts.retrain, opts.formats, reference_auc)
    if opts.dry_run:
        console.print("[bold]--dry-run[/]: nothing trained, nothing written")
        return 0

    originals = {name: p.detach().clone() for name, p in model.named_parameters()}
    result = _train(model, tokenizer, suite, plan, settings, mask, gate, base_measure, reference_auc, err, opts.quiet)
    _verify_in_memory(model, originals, mask)
    del originals
    final = result.final
    retention = final.retention(base_measure)
    console.print(f"[bold]trained[/] {result.unlearn.steps} steps in {result.seconds:.1f}s: {result.stop_reason}. "
                  f"At fp: forget KnowMem {final.knowmem_forget:.3f} (base {base_measure.knowmem_forget:.3f}), "
                  f"forget VerbMem {final.verbmem_forget:.3f} (base {base_measure.verbmem_forget:.3f}), "
                  f"retain KnowMem {final.knowmem_retain:.3f} (base {base_measure.knowmem_retain:.3f})",
                  highlight=False)

    model.eval()
    with staged_dir(opts.out) as stage:
        save_checkpoint(model, tokenizer, opts.base, stage)
        diff = weight_diff(opts.base, stage)
        outside = _changes_outside_mask(opts.base, stage, diff, mask)
        if outside:
            raise MeasurementError(f"internal error: parameters outside the mask changed: {', '.join(outside[:5])}")
        shifts = rtn_code_changes(opts.base, stage, sorted(diff.changed), bits=4)
        _print_changes(console, diff, shifts)
        code = run_check(opts.base, stage, retrain=opts.retrain, reference=None, suite=suite_dir,
                         formats=opts.formats, probes=("verbmem", "knowmem", "mia", "utility"),
                         out_dir=stage / RECHECK_DIR, seed=opts.seed, batch_size=16, config_file=opts.config_file,
                         thresholds=list(opts.thresholds), severities=list(opts.severities),
                         allow_inconclusive=opts.allow_inconclusive, trust_remote_code=opts.trust_remote_code,
                         quiet=opts.quiet,
                         settings={"prefix_tokens": None, "max_new_tokens": None, "answer_tokens": None,
                                   "mink_k": None}, out_inside=stage,  # the re-check's reports go inside STAGED
                         compute=opts.compute)
        recheck = _read_recheck(stage / RECHECK_DIR / "report.json")
        record = {
            "auditq_version": auditq.__version__,
            "created": recheck.get("created"),
            "base": {"path": str(opts.base.resolve()), "files_sha256": base_hashes},
            "suite": {"path": str(Path(suite_dir).resolve()), "sha256": suite.content_hash},
            "retrain": str(opts.retrain.resolve()) if opts.retrain else None,
            "method": plan.method,
            "hyperparameters": plan.as_dict(),
            "seed": plan.seed,
            "mask": {"granularity": mask.granularity, "percentile": mask.percentile,
                     "gamma": mask.gamma if math.isfinite(mask.gamma) else None,
                     "modules": mask.selected_modules(), "rows": mask.selected_rows(),
                     "trainable_parameters": mask.trainable_count(), "total_parameters": n_params},
            "saliency": {name: score for name, score in sorted(mask.module_scores.items())} if mask.module_scores else None,
            "training": {"steps": result.unlearn.steps, "stop_reason": result.stop_reason,
                         "stop_rule": {"memorisation": gate.describe(), "reference_auc": reference_auc,
                                       "privleak_target": plan.privleak_target,
                                       "privleak_ceiling": plan.privleak_ceiling},
                         "focus": [{"step": step, "forget_texts": n} for step, n in result.focus_log],
                         "seconds": round(result.seconds, 2), "saliency_seconds": round(result.saliency_seconds, 2),
                         "base_fp": _measure_dict(base_measure),
                         "history": [_measure_dict(m) for m in result.history],
                         "final_retention_fp": retention},
            "changed": {"parameters": diff.changed_entries, "tensors": {k: v for k, v in sorted(diff.changed.items())},
                        "total_parameters": diff.total_entries, "int4_rtn": shifts},
            "recheck": {"formats": list(opts.formats), "exit_code": code, "verdict": recheck.get("verdict"),
                        "checks": recheck.get("checks"), "report": f"{RECHECK_DIR}/report.json",
                        "checked_path": str(stage)},
        }
        write_record(stage, record)
        final_dir = commit(stage, opts.out)
    console.print(f"[bold]wrote[/] {final_dir} (safetensors, config, tokenizer, {RECORD_NAME}, {RECHECK_DIR}/) "
                  f"in {time.perf_counter() - started:.0f}s; re-check verdict [bold]{recheck.get('verdict')}[/] "
                  f"(exit {code})", highlight=False)
    return code


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


def _baseline_line(base, retrain) -> str:
    text = (f"original at fp: forget KnowMem {base.knowmem_forget:.3f}, forget VerbMem {base.verbmem_forget:.3f}, "
            f"retain KnowMem {base.knowmem_retain:.3f}, Min-K% AUC {base.mia_auc:.3f}")
    if retrain is not None:
        text += (f"; retrain: forget KnowMem {retrain.knowmem_forget:.3f}, forget VerbMem {retrain.verbmem_forget:.3f}, "
                 f"Min-K% AUC {retrain.mia_auc:.3f}")
    return text


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


def _print_changes(console: Console, diff, shifts=None) -> None:
    changed = sorted(diff.changed.items(), key=lambda kv: -kv[1])
    console.print(f"[bold]changed[/] {diff.changed_entries:,} of {diff.total_entries:,} stored parameters "
                  f"({100 * diff.changed_entries / max(1, diff.total_entries):.2f}%) in {len(changed)} tensor(s): "
                  + ", ".join(f"{_short(k)} ({v:,})" for k, v in changed)
                  + "; every other tensor is bit-identical to BASE", highlight=False)
    if shifts:
        console.print("  int4 RTN (per channel) of the changed tensors: "
                      + ", ".join(f"{_short(k)} mean |Δw| {v['mean_abs_delta_in_steps']:.2f} steps, "
                                  f"{100 * v['codes_changed']:.0f}% of codes differ" for k, v in shifts.items()),
                      highlight=False)


def _read_recheck(path: Path) -> dict:
    """Verdict and per-format check verdicts from the re-check's report.json."""
    import json

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"verdict": None, "checks": None, "created": None}
    checks = {}
    for fmt in report.get("formats", []):
        checks[fmt.get("format")] = {c.get("check"): {"verdict": c.get("verdict"), "value": c.get("value"),
                                                       "ci": [c.get("ci_low"), c.get("ci_high")],
                                                       "threshold": c.get("threshold")}
                                     for c in fmt.get("checks", [])}
    return {"verdict": report.get("verdict"), "checks": checks, "created": report.get("created")}
