"""What a remediation run records: each full-precision Measurement, and the run's RemediationResult."""

from __future__ import annotations

from dataclasses import dataclass, field

from auditq.remediate.plan import RemediationPlan
from auditq.remediate.saliency import SaliencyMask
from auditq.unlearning.config import UnlearnResult


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
