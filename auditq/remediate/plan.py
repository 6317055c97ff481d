"""What a remediation run will do: the per-scale presets, the plan (method, losses, lr, steps, mask, stop
targets; recorded in auditq-remediation.json) and the texts it trains on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from auditq.remediate.saliency import GRANULARITIES
from auditq.suite.records import Suite
from auditq.unlearning.config import FORGET_LOSSES, UnlearnConfig

METHODS = ("sure", "ga", "npo")


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


def with_overrides(preset: Preset, **overrides) -> RemediationPlan:
    """A plan from a preset, with every non-None override applied."""
    base = RemediationPlan(forget_loss=preset.forget_loss, retain_loss=preset.retain_loss, lr=preset.lr,
                           steps=preset.steps, percentile=preset.percentile, granularity=preset.granularity,
                           check_every=preset.check_every, retain_weight=preset.retain_weight,
                           batch_size=preset.batch_size, preset=preset.name)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def training_texts(suite: Suite, split: str) -> list[str]:
    """A split's training corpus: its texts, then its QA pairs rendered with the suite's QA template
    (`template(question) + " " + answer`), so that both what VerbMem and what KnowMem probe is unlearned
    (forget) or kept (retain)."""
    part = suite.split(split)
    template = suite.settings.qa_template
    return [r.text for r in part.texts] + [template.format(question=r.question) + " " + r.answer + "\n" for r in part.qa]
