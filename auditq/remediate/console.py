"""What `auditq remediate` prints: the saliency map, the plan, the baseline, what changed on disk."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table


def _short(name: str) -> str:
    return name.removesuffix(".weight").replace("model.layers.", "layers.")


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


def baseline_line(base, retrain) -> str:
    text = (f"original at fp: forget KnowMem {base.knowmem_forget:.3f}, forget VerbMem {base.verbmem_forget:.3f}, "
            f"retain KnowMem {base.knowmem_retain:.3f}, Min-K% AUC {base.mia_auc:.3f}")
    if retrain is not None:
        text += (f"; retrain: forget KnowMem {retrain.knowmem_forget:.3f}, forget VerbMem {retrain.verbmem_forget:.3f}, "
                 f"Min-K% AUC {retrain.mia_auc:.3f}")
    return text


def print_changes(console: Console, diff, shifts=None) -> None:
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
