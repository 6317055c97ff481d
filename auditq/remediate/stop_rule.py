"""When a remediation run measures, when it stops, and which forget texts it ascends on meanwhile.

The rule, measured at full precision:
1. every `check_every` steps: forget KnowMem and VerbMem retention (unlearned / original) and the
   Min-K% AUC of forget vs holdout text;
2. stop once both retentions pass `gate` (an `auditq.remediate.stop.ForgetGate`: the re-check's own
   bootstrap test with headroom; default: no retrain model, the default thresholds) AND the estimated PrivLeak
   against `reference_auc` (the retrain model's AUC, else 0.5) has risen to `plan.privleak_target` (MUSE's
   sign): gradient ascent keeps pushing forget text down after the answers are gone, and stopping
   there leaves it looking like unseen text instead of still familiar (PrivLeak ≪ 0) or
   over-forgotten (≫ 0).
   The AUC falls fast near that point (one scoring pass is cheap), so it is measured after EVERY
   step once the retentions are met or the estimate is within max(2·|floor|, half the original's)
   of the reference;
3. or, at any measurement, once the PrivLeak estimate rises to `plan.privleak_ceiling` (over-forgetting:
   further ascent would only push it further from the reference);
4. or the step budget ends.

Focus: while the PrivLeak estimate is at or above its target but a retention is not met yet, the
forget loss is computed only on the records still above the non-member floor for the unmet metrics
(`auditq.remediate.focus`), so finishing the last answers does not push the already forgotten texts
below never-seen text; below the target, every forget text is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from auditq.remediate.focus import focus_indices, still_memorised, training_record_ids, unmet
from auditq.remediate.monitor import Monitor, privleak_estimate
from auditq.remediate.plan import RemediationPlan
from auditq.remediate.records import Measurement, RemediationResult
from auditq.remediate.stop import summary
from auditq.suite.records import Suite

#: once focused, the PrivLeak estimate (points) may dip this far below its target before the ascent goes back
#: to the whole forget set: the focused steps move it by ±0.3 on the demo, and each switch restarts AdamW's mean
FOCUS_HYSTERESIS = 5.0


class StopRule:
    """The module's rule for one run: `should_stop(step)` is the unlearning loop's should_stop, `focus()` its
    forget_focus; measurements go to `result.history` (and `on_measure`), the reason to `result.stop_reason`."""

    def __init__(self, model, monitor: Monitor, suite: Suite, plan: RemediationPlan, gate,
                 result: RemediationResult, on_measure: Callable[[Measurement], None] | None) -> None:
        self.model, self.monitor, self.plan, self.gate = model, monitor, plan, gate
        self.result, self.on_measure = result, on_measure
        self.base, self.reference_auc = result.base, result.reference_auc
        self.use_mia = math.isfinite(plan.privleak_target)
        self.forgotten = False
        self.watch = False
        self.current_focus: list[int] | None = None
        self.focus_metrics: set[str] = set()
        self.remaining: dict = {}
        self.checks: dict | None = None
        self.record_ids = training_record_ids(suite, "forget")
        base_leak = privleak_estimate(self.base.mia_auc, self.reference_auc)
        # watch closely (MIA after every step) once the estimate is within this of the reference
        self.watch_level = min(-abs(plan.privleak_ceiling), base_leak / 2 if math.isfinite(base_leak) else 0.0)

    def focus(self) -> list[int] | None:
        return self.current_focus

    def _leak(self, current: Measurement) -> float:
        return privleak_estimate(current.mia_auc, self.reference_auc)

    def _memorisation_met(self, current: Measurement) -> bool:
        """The gate's test at fp, and, once a focus began, no focused metric's record above the floor."""
        met, checks = self.gate.check(current)
        self.checks = checks
        if self.use_mia and self._leak(current) >= self.plan.privleak_target:
            self.focus_metrics |= unmet(checks)
        self.remaining = still_memorised(current.outputs or {}, self.base.outputs or {}, self.focus_metrics)
        return met and not any(self.remaining.values())

    def _stop(self, reason: str, reached: bool) -> bool:
        focused = [(at, n) for at, n in self.result.focus_log if n < len(self.record_ids)]
        if focused:
            reason += (f"; from step {focused[0][0]} the forget loss used only the forget texts still above the "
                       f"non-member floor ({focused[0][1]} at first)")
        self.result.stop_reason, self.result.reached = reason, reached
        return True

    def _refocus(self, current: Measurement, full: bool) -> None:
        """Ascend only on what is still memorised once membership inference is at its target."""
        focus = self.current_focus
        leak = self._leak(current)
        if leak < self.plan.privleak_target - (FOCUS_HYSTERESIS if self.focus_metrics else 0.0):
            focus = None
        elif full:
            focus = focus_indices(self.record_ids, self.remaining) or None
        if focus != self.current_focus:
            self.result.focus_log.append((current.step, len(focus) if focus else len(self.record_ids)))
        self.current_focus = focus

    def _measure(self, step: int, full: bool) -> tuple[Measurement, bool]:
        """This step's measurement: MIA (when used) and, at a full check, memorisation; memorisation too as soon
        as the AUC is where it should be (are the answers gone too? measure now, not K steps later)."""
        monitor, model = self.monitor, self.model
        current = monitor.measure(model, step, memorisation=full, mia=self.use_mia)
        if (self.use_mia and not full and not self.forgotten
                and self._leak(current) >= self.plan.privleak_target):
            current, full = replace(monitor.measure(model, step, memorisation=True, mia=False),
                                    mia_auc=current.mia_auc), True
        return current, full

    def should_stop(self, step: int) -> bool:
        plan = self.plan
        full = step % plan.check_every == 0 or step == plan.steps
        if not full and not (self.use_mia and (self.forgotten or self.watch)):
            return False
        current, full = self._measure(step, full)
        self.result.history.append(current)
        if self.on_measure is not None:
            self.on_measure(current)
        if full:
            self.forgotten = self._memorisation_met(current)
        if self.use_mia:
            self._refocus(current, full)
        forget_text = "forget retention at fp " + summary(self.checks or {})
        if not self.use_mia:
            return self._stop(f"target reached after {step} steps: {forget_text}", True) if self.forgotten else False
        leak = self._leak(current)
        self.watch = self.watch or leak >= self.watch_level
        if self.forgotten and leak >= plan.privleak_target:
            return self._stop(f"target reached after {step} steps: {forget_text}; PrivLeak estimate {leak:+.1f}% "
                              f"≥ {plan.privleak_target:+.1f}%", True)
        if leak >= plan.privleak_ceiling:
            return self._stop(f"over-forgetting guard after {step} steps: PrivLeak estimate {leak:+.1f}% ≥ "
                              f"{plan.privleak_ceiling:+.1f}%; {forget_text}", self.forgotten)
        return False
