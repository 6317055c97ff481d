"""Frozen result types: what an audit found, independent of how it is written out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = "1.3"  # 1.1: ROC points, per-role intervals, waivers, WAIVED verdict; 1.2: PrivLeak in MUSE's sign
# (negative = under-unlearned), floored retention with check extras (raw_ratio, floor), details.reference_attack;
# 1.3: NOT_REQUESTED verdict (a check whose probe was not in --probes)

PASS, FAIL, INCONCLUSIVE, UNKNOWN = "PASS", "FAIL", "INCONCLUSIVE", "UNKNOWN"
#: a FAIL or INCONCLUSIVE accepted by an unexpired waiver (auditq.verdict.waivers); does not fail the gate
WAIVED = "WAIVED"
#: a check whose probe the user left out of --probes: neither measured nor failed to measure, so it is shown
#: apart (never as UNKNOWN, which is "asked for and could not be measured") and left out of the overall verdict
NOT_REQUESTED = "NOT_REQUESTED"
VERDICTS = (PASS, FAIL, INCONCLUSIVE, UNKNOWN, WAIVED, NOT_REQUESTED)


def verdict_label(verdict: str) -> str:
    """How a verdict is printed: 'not requested' for NOT_REQUESTED (so it never reads like a finding), else as is."""
    return "not requested" if verdict == NOT_REQUESTED else verdict

SIGN_CONVENTION = (
    "Membership inference: every attack score is oriented so that higher means 'more likely a member' "
    "(loss -> -loss, zlib -> -loss/zlib_bytes, Min-K% and Min-K%++ as mean of the lowest k log-probs); "
    "the attack AUCs in the metrics label forget texts 1 and holdout texts 0, so AUC > 0.5 means the forget "
    "texts still look like training data. PrivLeak is MUSE's: Min-K% (k = 0.4) AUC with forget labelled 0 and "
    "holdout 1 (= 1 - the metrics' Min-K% AUC), PrivLeak = (AUC_unlearned - AUC_retrain) / AUC_retrain * 100 "
    "(without --retrain: 0.5, or --privleak-reference-auc): near 0 is good, NEGATIVE = under-unlearned "
    "(forget text still recognised), positive = over-unlearned."
)


@dataclass(frozen=True)
class CheckResult:
    """One verdict: check × format, with the measured value, its interval and the rule applied."""

    check: str            # e.g. "forget_retention.verbmem"
    family: str           # config key: forget_retention | recovery | privleak | utility
    format: str
    verdict: str
    severity: str         # error gates the exit code; warn only reports
    value: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: float
    comparator: str
    n: int
    message: str
    #: the waiver that matched (reason, expires, source, status applied|expired, original_verdict)
    waiver: dict[str, Any] | None = None
    #: numbers behind the verdict (e.g. raw_ratio and floor of a floored retention, the AUCs of PrivLeak)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def gating(self) -> bool:
        return self.severity == "error"


@dataclass(frozen=True)
class AttackResult:
    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_01pct_fpr: float
    n_members: int
    n_nonmembers: int
    #: the ROC curve's corner points (collinear points dropped), for plots without re-measuring
    roc_fpr: tuple[float, ...] = ()
    roc_tpr: tuple[float, ...] = ()


@dataclass(frozen=True)
class RoleMetrics:
    """Aggregates for one model (base / unlearned / retrain) in one format."""

    role: str
    verbmem_forget: float | None = None
    knowmem_forget: float | None = None
    knowmem_retain: float | None = None
    retain_nll: float | None = None
    retain_ppl: float | None = None
    mia: dict[str, AttackResult] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    #: metric -> (low, high) 95% percentile-bootstrap interval of the mean (for plots)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: probe -> "measured" (this run) or "cached:<sha256 of the cache entry>" (auditq.cache.store)
    provenance: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FormatResult:
    format: str
    details: dict[str, Any]
    roles: dict[str, RoleMetrics]
    checks: tuple[CheckResult, ...]
    privleak: float | None = None
    error: str | None = None
    #: auditq.audit.evidence: share of UNLEARNED's quantized codes equal to BASE's, mean |Δw| in steps,
    #: bit_identical ... (None: the format has no integer codes)
    weight_evidence: dict[str, Any] | None = None


@dataclass(frozen=True)
class AuditReport:
    schema_version: str
    tool_version: str
    created: str
    arguments: dict[str, Any]
    seed: int
    config: dict[str, Any]
    checkpoints: dict[str, dict[str, Any]]
    suite: dict[str, Any]
    sign_convention: str
    formats: tuple[FormatResult, ...]
    verdict: str
    exit_code: int
    environment: dict[str, str] = field(default_factory=dict)
    #: every configured waiver and what became of it (applied / expired / not_needed / unmatched)
    waivers: tuple[dict[str, Any], ...] = ()
    #: the result cache in this run: enabled, hits, misses, tampered entries (dropped, re-measured), verified rows
    cache: dict[str, Any] = field(default_factory=dict)

    def all_checks(self) -> list[CheckResult]:
        return [c for f in self.formats for c in f.checks]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
