"""Re-unlearning from the ORIGINAL model so that the result survives quantization.

SURE (Zhang et al., ICLR 2025, §5): score every nn.Linear weight by the norm of the forget-loss
gradient at θ_o (`auditq.remediate.saliency`), keep the top (100 − p)% (m_i = s_i ≥ γ), and
unlearn with a LARGE learning rate updating only those weights: θ_u = θ_o + m ⊙ Δθ. A large
step moves the salient weights by more than a 4-bit quantization step, so rounding cannot map
them back onto the original's codes; the small mask limits the damage a large step does to the
retain set.

The mask is enforced by `auditq.unlearning.loop.unlearn` (masked gradients, frozen entries restored
bit-exactly after every step), unlike the public reference code whose mask hook is never
called. Training stops on a measured criterion (see `remediate`): forget KnowMem and VerbMem
retention at full precision pass the re-check's own test (`auditq.remediate.stop`) and the
Min-K% membership signal has come down to the reference model's, or the step budget is spent
(`auditq.remediate.stop_rule`).

The run's parts: plan.py (presets, RemediationPlan, the training texts), monitor.py (the full-precision
measurements), records.py (Measurement, RemediationResult), stop_rule.py (when to measure, stop and focus);
this module computes the mask and runs the masked unlearning. Their public names stay importable from here.
"""


from __future__ import annotations

import time
from collections.abc import Callable

import torch

from auditq.probes.base import ProbeSettings
from auditq.remediate.monitor import Monitor, privleak_estimate
from auditq.remediate.plan import (DEMO_PRESET_MAX_PARAMS, METHODS, PRESETS, Preset, RemediationPlan, pick_preset,
                                   training_texts, with_overrides)
from auditq.remediate.records import Measurement, RemediationResult
from auditq.remediate.saliency import SaliencyMask, compute_saliency, saliency_mask
from auditq.remediate.stop_rule import FOCUS_HYSTERESIS, StopRule
from auditq.suite.records import Suite
from auditq.unlearning.config import StepLog
from auditq.unlearning.loop import unlearn
from auditq.unlearning.masks import linear_weights

__all__ = [  # the remediation's public names, wherever they now live
    "DEMO_PRESET_MAX_PARAMS", "FOCUS_HYSTERESIS", "METHODS", "PRESETS", "Measurement", "Monitor", "Preset",
    "RemediationPlan", "RemediationResult", "pick_preset", "plan_mask", "privleak_estimate", "remediate",
    "training_texts", "with_overrides",
]


def plan_mask(model, tokenizer, suite: Suite, plan: RemediationPlan) -> SaliencyMask:
    """SURE's mask at the model's current (original) weights; ga/npo get an all-True mask over nn.Linear weights."""
    if plan.uses_mask:
        saliency = compute_saliency(model, tokenizer, training_texts(suite, "forget"), plan.unlearn_config(),
                                    plan.granularity)
        return saliency_mask(saliency, plan.percentile)
    weights = linear_weights(model)
    return SaliencyMask("module", 0.0, float("-inf"), {name: True for name in weights},
                        {name: tuple(p.shape) for name, p in weights.items()})


def remediate(model, tokenizer, suite: Suite, plan: RemediationPlan, settings: ProbeSettings,
              mask: SaliencyMask | None = None, base_measurement: Measurement | None = None,
              reference_auc: float = 0.5, gate=None,
              on_step: Callable[[StepLog], None] | None = None,
              on_measure: Callable[[Measurement], None] | None = None) -> RemediationResult:
    """Unlearn the suite's forget split from `model` (the ORIGINAL weights) in place.

    Only nn.Linear weights selected by `mask` may change (computed here when not given); every
    other tensor, and every unselected entry, stays bit-identical. Measured, stopped and focused as
    `auditq.remediate.stop_rule` says; `gate` (an `auditq.remediate.stop.ForgetGate`) defaults to the
    re-check's own test without a retrain model, with the default thresholds.
    """
    start = time.perf_counter()
    torch.manual_seed(plan.seed)
    if mask is None:
        mask = plan_mask(model, tokenizer, suite, plan)
    saliency_seconds = time.perf_counter() - start
    monitor = Monitor(tokenizer, suite, settings)
    base = base_measurement or monitor.measure(model, 0)
    result = RemediationResult(plan, mask, base, reference_auc=reference_auc, saliency_seconds=saliency_seconds)
    if gate is None:
        from auditq.remediate.stop import ForgetGate
        from auditq.verdict.config import AuditConfig

        gate = ForgetGate(AuditConfig(), plan.seed, base, None, plan.target, plan.headroom)
    result.gate = gate
    rule = StopRule(model, monitor, suite, plan, gate, result, on_measure)
    config = plan.unlearn_config()
    result.unlearn = unlearn(model, tokenizer, training_texts(suite, "forget"), training_texts(suite, "retain"),
                             config, trainable=mask.trainable, should_stop=rule.should_stop, progress=on_step,
                             forget_focus=rule.focus)
    if result.history and result.history[-1].knowmem_forget is None:  # end on a full measurement
        last = monitor.measure(model, result.unlearn.steps, memorisation=True, mia=rule.use_mia)
        result.history[-1] = last
        if on_measure is not None:
            on_measure(last)
    if not result.stop_reason:
        result.stop_reason = f"step budget of {plan.steps} steps spent before the stop criterion was met"
    result.seconds = time.perf_counter() - start
    return result
