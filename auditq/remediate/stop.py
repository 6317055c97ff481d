"""The memorisation half of the stop rule, judged the way the re-check will judge it.

A point target is not enough on a probe suite of a few dozen records: the gate passes a
forget-retention check only when the upper end of its bootstrap 95% interval is under the
threshold, and that interval is ±0.03–0.06 wide on the demo suite. So the stop rule runs the
gate's own check (`auditq.verdict.policy.CheckEvaluator.forget_retention`, same bootstrap, same
seed) on the full-precision measurement and asks for a PASS, optionally against a threshold
tightened by `headroom` (room for what quantization may add back; 0 by default: the 95% upper
bound is conservative already, and SURE's large steps leave little for rounding to restore):

- no --retrain:  retention's upper bound ≤ forget_retention threshold − headroom (0.25);
- --retrain:     as the gate, against retrain's retention + (retrain_margin − headroom);
- --target T:    retention's upper bound ≤ T (the retrain model is then not used for it).

Sample-count minimums do not apply here (a small suite still stops); a metric the original
model does not show at all (nothing to forget) counts as met.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from auditq.result.model import PASS, UNKNOWN, CheckResult
from auditq.verdict.config import AuditConfig, CheckPolicy

METRICS = ("knowmem", "verbmem")


@dataclass
class ForgetGate:
    config: AuditConfig
    seed: int
    base: object                 # auditq.remediate.records.Measurement with outputs
    retrain: object | None = None
    target: float | None = None
    headroom: float = 0.0

    def __post_init__(self) -> None:
        from auditq.verdict.policy import CheckEvaluator
        from auditq.verdict.scoring import collect_samples

        policy = self.config.checks["forget_retention"]
        config = replace(self.config, min_n=1)
        if self.target is not None:
            config = replace(config, checks={**config.checks, "forget_retention": CheckPolicy(
                self.target, policy.severity, policy.comparator)})
        elif self.retrain is not None:
            config = replace(config, retrain_margin=self.config.retrain_margin - self.headroom)
        else:
            config = replace(config, checks={**config.checks, "forget_retention": CheckPolicy(
                policy.threshold - self.headroom, policy.severity, policy.comparator)})
        self._evaluator = CheckEvaluator(config, self.seed)
        self._base = collect_samples(self.base.outputs or {}, None)
        use_retrain = self.retrain is not None and self.target is None
        self._retrain = collect_samples(self.retrain.outputs or {}, None) if use_retrain else None

    def check(self, current) -> tuple[bool, dict[str, CheckResult]]:
        """(met, {metric: the fp forget_retention check against the tightened threshold})."""
        from auditq.verdict.policy import FormatSamples
        from auditq.verdict.scoring import collect_samples

        samples = FormatSamples(self._base, collect_samples(current.outputs or {}, None), self._retrain)
        results = {metric: self._evaluator.forget_retention("fp", samples, metric) for metric in METRICS}
        met = all(r.verdict == PASS or (r.verdict == UNKNOWN and "nothing to retain" in r.message)
                  for r in results.values())
        return met, results

    def describe(self) -> str:
        spare = f" − {self.headroom:g} headroom" if self.headroom else ""
        if self.target is not None:
            return f"the 95% upper bound of each retention is ≤ {self.target:g}"
        if self.retrain is not None:
            return (f"each retention passes the gate's own test (95% upper bound ≤ the retrain model's retention + "
                    f"margin {self.config.retrain_margin:g}{spare})")
        threshold = self.config.checks["forget_retention"].threshold
        return f"each retention passes the gate's own test (95% upper bound ≤ {threshold:g}{spare})"


def summary(results: dict[str, CheckResult]) -> str:
    """'KnowMem 0.013 [≤0.037, need ≤0.054], VerbMem …' for logs and the stop reason."""
    parts = []
    for metric, r in results.items():
        value = "n/a" if r.value is None else f"{r.value:.3f}"
        high = "" if r.ci_high is None else f" (95% ≤ {r.ci_high:.3f}"
        parts.append(f"{'KnowMem' if metric == 'knowmem' else 'VerbMem'} {value}{high}, need ≤ {r.threshold:.3f})"
                     if high else f"{'KnowMem' if metric == 'knowmem' else 'VerbMem'} {value} (need ≤ {r.threshold:.3f})")
    return ", ".join(parts)
