"""Re-unlearning from the ORIGINAL model so that the result survives quantization.

SURE (Zhang et al., ICLR 2025, §5): score every nn.Linear weight by the norm of the forget-loss
gradient at θ_o (`auditq.remediate.saliency`), keep the top (100 − p)% (m_i = s_i ≥ γ), and
unlearn with a LARGE learning rate updating only those weights: θ_u = θ_o + m ⊙ Δθ. A large
step moves the salient weights by more than a 4-bit quantization step, so rounding cannot map
them back onto the original's codes; the small mask limits the damage a large step does to the
retain set.

The mask is enforced by `auditq.unlearning.unlearn.unlearn` (masked gradients, frozen entries restored
bit-exactly after every step), unlike the public reference code whose mask hook is never
called. Training stops on a measured criterion (see `remediate`): forget KnowMem and VerbMem
retention at full precision pass the re-check's own test (`auditq.remediate.stop`) and the
Min-K% membership signal has come down to the reference model's, or the step budget is spent.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch

from auditq.probes.base import ProbeSettings
from auditq.remediate.focus import focus_indices, still_memorised, training_record_ids, unmet
from auditq.remediate.saliency import GRANULARITIES, SaliencyMask, compute_saliency, saliency_mask
from auditq.suite.records import Suite
from auditq.unlearning.unlearn import FORGET_LOSSES, StepLog, UnlearnConfig, UnlearnResult, linear_weights, unlearn

METHODS = ("sure", "ga", "npo")
#: once focused, the PrivLeak estimate (points) may dip this far below its target before the ascent goes back
#: to the whole forget set: the focused steps move it by ±0.3 on the demo, and each switch restarts AdamW's mean
FOCUS_HYSTERESIS = 5.0


@dataclass(frozen=True)
class Preset:
    """Defaults for one model scale; every value can be overridden by a flag."""

    name: str
    lr: float
    steps: int
    percentile: float
    granularity: str
    check_every: int
    forget_loss: str
    retain_loss: str
    retain_weight: float
    batch_size: int
    description: str


PRESETS: dict[str, Preset] = {
    # real (7B-class) models: a large lr 1e-4 and the top 10% of modules
    "default": Preset("default", lr=1e-4, steps=200, percentile=90.0, granularity="module", check_every=10,
                      forget_loss="ga", retain_loss="klr", retain_weight=1.0, batch_size=8,
                      description="real models (the paper's 7B setting): lr 1e-4, top 10% of modules"),
    # from measurements on the 1.1M-parameter demo model (README, "Fixing a failure"): lr 1e-3 moves the
    # three salient tensors by ~1 int4 step in ~90 steps; 5·KLR kept retain KnowMem at 0.96 of the original's
    "demo": Preset("demo", lr=1e-3, steps=200, percentile=90.0, granularity="module", check_every=10,
                   forget_loss="ga", retain_loss="klr", retain_weight=5.0, batch_size=16,
                   description="tiny models (< 10M parameters, e.g. the auditq demo)"),
}
#: models below this many parameters get the demo preset when --preset is auto
DEMO_PRESET_MAX_PARAMS = 10_000_000


def pick_preset(name: str, n_params: int) -> Preset:
    if name == "auto":
        return PRESETS["demo" if n_params < DEMO_PRESET_MAX_PARAMS else "default"]
    if name not in PRESETS:
        raise ValueError(f"preset must be auto or one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name]


@dataclass(frozen=True)
class RemediationPlan:
    """Everything that determines a remediation run (recorded in auditq-remediation.json)."""

    method: str = "sure"
    forget_loss: str = "ga"
    retain_loss: str = "klr"
    lr: float = 1e-4
    steps: int = 200
    percentile: float = 90.0
    granularity: str = "module"
    check_every: int = 10
    #: memorisation stop: None = the gate's own test with `headroom` (auditq.remediate.stop); a number =
    #: the 95% upper bound of forget KnowMem and VerbMem retention at fp must be ≤ it
    target: float | None = None
    headroom: float = 0.0
    #: then stop once the estimated PrivLeak (%, MUSE's sign: negative = under-unlearned) has risen to at
    #: least this (inf: ignore membership inference)
    privleak_target: float = 0.0
    #: ...and stop in any case once it rises to this (forget text already looks less familiar than
    #: unseen text: more ascent only over-forgets); the privleak gate's threshold by default
    privleak_ceiling: float = 20.0
    retain_weight: float = 1.0
    batch_size: int = 8
    beta: float = 0.1
    max_length: int = 256
    seed: int = 0
    preset: str = "default"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.forget_loss not in FORGET_LOSSES:
            raise ValueError(f"forget loss must be one of {', '.join(FORGET_LOSSES)}, got {self.forget_loss!r}")
        if self.retain_loss not in ("gdr", "klr"):
            raise ValueError(f"retain loss must be gdr or klr, got {self.retain_loss!r}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")
        if not 0.0 <= self.percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {self.percentile}")
        if self.steps < 1 or self.check_every < 1 or self.batch_size < 1:
            raise ValueError("steps, check_every and batch_size must be positive")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")

    @property
    def uses_mask(self) -> bool:
        return self.method == "sure"

    @property
    def effective_forget_loss(self) -> str:
        return self.forget_loss if self.method == "sure" else self.method

    def unlearn_config(self) -> UnlearnConfig:
        return UnlearnConfig(forget_loss=self.effective_forget_loss, retain_loss=self.retain_loss,
                             retain_weight=self.retain_weight, lr=self.lr, max_steps=self.steps,
                             batch_size=self.batch_size, retain_batch_size=self.batch_size, beta=self.beta,
                             max_length=self.max_length, seed=self.seed)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["forget_loss"] = self.effective_forget_loss
        return data


# ---------------------------------------------------------------------------- data

def training_texts(suite: Suite, split: str) -> list[str]:
    """A split's training corpus: its texts, then its QA pairs rendered with the suite's QA template
    (`template(question) + " " + answer`), so that both what VerbMem and what KnowMem probe is unlearned
    (forget) or kept (retain)."""
    part = suite.split(split)
    template = suite.settings.qa_template
    return [r.text for r in part.texts] + [template.format(question=r.question) + " " + r.answer + "\n" for r in part.qa]


# ---------------------------------------------------------------------------- measuring

@dataclass(frozen=True)
class Measurement:
    """Forget / retain memorisation and forget-vs-holdout Min-K% AUC of one model at full precision,
    measured with the probes `auditq check` uses. A field not measured at this step is None."""

    step: int
    knowmem_forget: float | None = None
    verbmem_forget: float | None = None
    knowmem_retain: float | None = None
    mia_auc: float | None = None
    #: the probe outputs behind the means (per-sample scores, for the gate's bootstrap)
    outputs: dict | None = field(default=None, repr=False, compare=False)

    def retention(self, base: "Measurement") -> dict[str, float]:
        def ratio(a, b):
            return a / b if a is not None and b is not None and b > 0 else float("nan")

        return {"knowmem": ratio(self.knowmem_forget, base.knowmem_forget),
                "verbmem": ratio(self.verbmem_forget, base.verbmem_forget),
                "utility": ratio(self.knowmem_retain, base.knowmem_retain)}


def privleak_estimate(auc: float | None, reference_auc: float) -> float:
    """The report's PrivLeak (MUSE's) from Min-K% AUCs with forget = members (`Monitor.auc`):
    AUC_MUSE = 1 − AUC, then (AUC_MUSE − AUC_MUSE,ref) / AUC_MUSE,ref × 100 (< 0: forget text still looks seen)."""
    from auditq.verdict.stats import muse_privleak

    if auc is None or not reference_auc < 1:
        return float("nan")
    return muse_privleak(auc, reference_auc)


class Monitor:
    """Runs KnowMem (forget + retain QA), VerbMem (forget texts) and Min-K% membership inference
    (forget vs holdout texts) on a model in place, at full precision."""

    def __init__(self, tokenizer, suite: Suite, settings: ProbeSettings, batch_size: int = 32) -> None:
        self.tokenizer = tokenizer
        self.suite = suite
        self.settings = settings
        self.batch_size = batch_size

    @torch.no_grad()
    def measure(self, model, step: int = 0, memorisation: bool = True, mia: bool = True) -> Measurement:
        from auditq.backends.torch_lm import TorchCausalLM
        from auditq.probes.knowmem import KnowMem
        from auditq.probes.verbmem import VerbMem

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        was_training = model.training
        model.eval()
        fields: dict = {}
        try:
            lm = TorchCausalLM(model, pad, tok.eos_token_id, batch_size=self.batch_size)
            if memorisation:
                know = KnowMem().run(lm, tok, self.suite, self.settings)
                verb = VerbMem().run(lm, tok, self.suite, self.settings)
                fields.update(knowmem_forget=_mean(know, "forget"), verbmem_forget=_mean(verb, "forget"),
                              knowmem_retain=_mean(know, "retain"), outputs={"knowmem": know, "verbmem": verb})
            if mia:
                fields["mia_auc"] = self.auc(lm)
        finally:
            model.train(was_training)
        return Measurement(step, **fields)

    def auc(self, lm) -> float | None:
        from auditq.probes.mia import MembershipInference, membership_scores
        from auditq.verdict import stats
        from auditq.verdict.scoring import PRIVLEAK_ATTACK

        out = MembershipInference().run(lm, self.tokenizer, self.suite, self.settings)
        members = membership_scores(out, "forget", PRIVLEAK_ATTACK)
        nonmembers = membership_scores(out, "holdout", PRIVLEAK_ATTACK)
        if members.size == 0 or nonmembers.size == 0:
            return None
        return float(stats.roc_auc(members, nonmembers))


def _mean(output, split: str) -> float | None:
    values = output.values(split, "rougeL_f1")
    return float(values.mean()) if values.size else None


# ---------------------------------------------------------------------------- the run

@dataclass
class RemediationResult:
    plan: RemediationPlan
    mask: SaliencyMask | None
    base: Measurement
    reference_auc: float = 0.5
    history: list[Measurement] = field(default_factory=list)
    unlearn: UnlearnResult | None = None
    stop_reason: str = ""
    reached: bool = False
    gate: object = None
    #: (step, number of forget training texts) each time the ascent's focus changed (auditq.remediate.focus)
    focus_log: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0
    saliency_seconds: float = 0.0

    @property
    def final(self) -> Measurement:
        """The last full measurement (memorisation and MIA), taken at the last step."""
        full = [m for m in self.history if m.knowmem_forget is not None]
        return full[-1] if full else self.base

    @property
    def final_auc(self) -> float | None:
        aucs = [m.mia_auc for m in self.history if m.mia_auc is not None]
        return aucs[-1] if aucs else self.base.mia_auc


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
    other tensor, and every unselected entry, stays bit-identical.

    Stop rule, measured at full precision:
    1. every `check_every` steps: forget KnowMem and VerbMem retention (unlearned / original) and the
       Min-K% AUC of forget vs holdout text;
    2. stop once both retentions pass `gate` (an `auditq.remediate.stop.ForgetGate`: the re-check's own
       bootstrap test with headroom; default: no retrain model, the default thresholds) AND the estimated PrivLeak against
       `reference_auc` (the retrain model's AUC, else 0.5) has risen to `plan.privleak_target` (MUSE's
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
    use_mia = math.isfinite(plan.privleak_target)
    state: dict = {"forgotten": False, "watch": False, "focus": None, "focus_metrics": set(), "remaining": {}}
    record_ids = training_record_ids(suite, "forget")
    base_leak = privleak_estimate(base.mia_auc, reference_auc)
    # watch closely (MIA after every step) once the estimate is within this of the reference
    watch_level = min(-abs(plan.privleak_ceiling), base_leak / 2 if math.isfinite(base_leak) else 0.0)

    from auditq.remediate.stop import summary

    def memorisation_met(current: Measurement) -> bool:
        """The gate's test at fp, and, once a focus began, no focused metric's record above the floor."""
        met, checks = gate.check(current)
        state["checks"] = checks
        if use_mia and privleak_estimate(current.mia_auc, reference_auc) >= plan.privleak_target:
            state["focus_metrics"] |= unmet(checks)
        state["remaining"] = still_memorised(current.outputs or {}, base.outputs or {}, state["focus_metrics"])
        return met and not any(state["remaining"].values())

    def stop(reason: str, reached: bool) -> bool:
        focused = [(at, n) for at, n in result.focus_log if n < len(record_ids)]
        if focused:
            reason += (f"; from step {focused[0][0]} the forget loss used only the forget texts still above the "
                       f"non-member floor ({focused[0][1]} at first)")
        result.stop_reason, result.reached = reason, reached
        return True

    def refocus(current: Measurement, full: bool) -> None:
        """Ascend only on what is still memorised once membership inference is at its target."""
        focus = state["focus"]
        leak = privleak_estimate(current.mia_auc, reference_auc)
        if leak < plan.privleak_target - (FOCUS_HYSTERESIS if state["focus_metrics"] else 0.0):
            focus = None
        elif full:
            focus = focus_indices(record_ids, state["remaining"]) or None
        if focus != state["focus"]:
            result.focus_log.append((current.step, len(focus) if focus else len(record_ids)))
        state["focus"] = focus

    def should_stop(step: int) -> bool:
        full = step % plan.check_every == 0 or step == plan.steps
        if not full and not (use_mia and (state["forgotten"] or state["watch"])):
            return False
        current = monitor.measure(model, step, memorisation=full, mia=use_mia)
        if (use_mia and not full and not state["forgotten"]
                and privleak_estimate(current.mia_auc, reference_auc) >= plan.privleak_target):
            # the AUC is where it should be: are the answers gone too? (measure now, not K steps later)
            current, full = replace(monitor.measure(model, step, memorisation=True, mia=False),
                                    mia_auc=current.mia_auc), True
        result.history.append(current)
        if on_measure is not None:
            on_measure(current)
        if full:
            state["forgotten"] = memorisation_met(current)
        if use_mia:
            refocus(current, full)
        forget_text = "forget retention at fp " + summary(state.get("checks") or {})
        if not use_mia:
            return stop(f"target reached after {step} steps: {forget_text}", True) if state["forgotten"] else False
        leak = privleak_estimate(current.mia_auc, reference_auc)
        state["watch"] = state["watch"] or leak >= watch_level
        if state["forgotten"] and leak >= plan.privleak_target:
            return stop(f"target reached after {step} steps: {forget_text}; PrivLeak estimate {leak:+.1f}% "
                        f"≥ {plan.privleak_target:+.1f}%", True)
        if leak >= plan.privleak_ceiling:
            return stop(f"over-forgetting guard after {step} steps: PrivLeak estimate {leak:+.1f}% ≥ "
                        f"{plan.privleak_ceiling:+.1f}%; {forget_text}", state["forgotten"])
        return False

    config = plan.unlearn_config()
    result.unlearn = unlearn(model, tokenizer, training_texts(suite, "forget"), training_texts(suite, "retain"),
                             config, trainable=mask.trainable, should_stop=should_stop, progress=on_step,
                             forget_focus=lambda: state["focus"])
    if result.history and result.history[-1].knowmem_forget is None:  # end on a full measurement
        last = monitor.measure(model, result.unlearn.steps, memorisation=True, mia=use_mia)
        result.history[-1] = last
        if on_measure is not None:
            on_measure(last)
    if not result.stop_reason:
        result.stop_reason = f"step budget of {plan.steps} steps spent before the stop criterion was met"
    result.seconds = time.perf_counter() - start
    return result


def with_overrides(preset: Preset, **overrides) -> RemediationPlan:
    """A plan from a preset, with every non-None override applied."""
    base = RemediationPlan(forget_loss=preset.forget_loss, retain_loss=preset.retain_loss, lr=preset.lr,
                           steps=preset.steps, percentile=preset.percentile, granularity=preset.granularity,
                           check_every=preset.check_every, retain_weight=preset.retain_weight,
                           batch_size=preset.batch_size, preset=preset.name)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
