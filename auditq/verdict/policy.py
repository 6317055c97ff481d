"""Verdicts: compare each check's value and bootstrap interval with its threshold.

PASS     the whole interval is on the passing side,
FAIL     the whole interval is on the failing side,
INCONCLUSIVE  the interval straddles the threshold, or fewer than `min_n` samples,
UNKNOWN  a probe or format could not run; never counted as PASS.
NOT_REQUESTED  the check's probe was not in --probes: shown apart and left out of the overall verdict
         (`gate`); an audit in which no check ran at all is UNKNOWN, never PASS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from auditq.errors import EXIT_FAIL, EXIT_MEASURE, EXIT_PASS
from auditq.result.model import FAIL, INCONCLUSIVE, NOT_REQUESTED, PASS, UNKNOWN, CheckResult
from auditq.verdict import stats
from auditq.verdict.config import AuditConfig, CheckPolicy
from auditq.verdict.retention import retention
from auditq.verdict.scoring import PRIVLEAK_ATTACK, RoleSamples
from auditq.verdict.stats import ratio_of_means
from auditq.verdict.tofu import TOFU_CHECKS, has_tofu, tofu_checks

MEMORISATION = ("verbmem", "knowmem")
#: forget-knowledge metrics whose arrays are RoleSamples.<metric>_forget / _holdout; mcq's checks are added only
#: when --probes asks for mcq (not a default probe: every other audit keeps its rows)
FORGET_METRICS = MEMORISATION + ("mcq",)
#: the probes a check reads (by the check's last name part): it is requested when any of them is in --probes.
#: The utility check reads KnowMem on retain; asking for the `utility` probe (retain likelihood) alone asks for it
#: too, and it is then UNKNOWN with a reason naming knowmem, not silently dropped.
CHECK_PROBES = {"verbmem": ("verbmem",), "knowmem": ("knowmem",), "privleak": ("mia",),
                "utility": ("knowmem", "utility"), "mcq": ("mcq",), "forget_quality": ("tofu",), "probability": ("tofu",),
                "model_utility": ("tofu",)}


def check_probes(check: str) -> tuple[str, ...]:
    """The probes behind a check name ("recovery.verbmem" -> ("verbmem",))."""
    return CHECK_PROBES.get(check.rpartition(".")[2], ())


def nothing_gated(checks: list[CheckResult]) -> bool:
    """True when no check at all ran, or checks were left out (--probes) and none that ran gates.

    A configuration that makes every check warn-only still reports PASS when everything ran: that is
    what its author chose; leaving probes out must not turn the remaining warn-only checks into a PASS.
    """
    ran = [c for c in checks if c.verdict != NOT_REQUESTED]
    return not ran or (len(ran) < len(checks) and not any(c.gating for c in ran))


def gate(checks: list[CheckResult], allow_inconclusive: bool, fail_on: str | None = None) -> tuple[str, int]:
    """Overall verdict and exit code from the gating (error-severity) checks that ran.

    `fail_on`: "inconclusive" (default) exits 1 on FAIL or INCONCLUSIVE, "fail" (= allow_inconclusive)
    only on FAIL, "never" never exits 1; every policy exits 3 when a gating check is UNKNOWN (a gate
    never swallows a tool failure). WAIVED counts as passing. NOT_REQUESTED checks are left out; when
    --probes left no gating check to run (`nothing_gated`) the overall is UNKNOWN (exit 3): nothing was
    audited, which must never read as PASS.
    """
    fail_on = fail_on or ("fail" if allow_inconclusive else "inconclusive")
    if nothing_gated(checks):
        return UNKNOWN, EXIT_MEASURE
    verdicts = {c.verdict for c in checks if c.gating}
    verdict = next((v for v in (FAIL, UNKNOWN, INCONCLUSIVE) if v in verdicts), PASS)
    if fail_on == "never":
        return verdict, EXIT_MEASURE if UNKNOWN in verdicts else EXIT_PASS
    if verdict == FAIL:
        return FAIL, EXIT_FAIL
    if verdict == UNKNOWN:
        return UNKNOWN, EXIT_MEASURE
    if verdict == INCONCLUSIVE:
        return INCONCLUSIVE, EXIT_FAIL if fail_on == "inconclusive" else EXIT_PASS
    return PASS, EXIT_PASS


def _passes(x: float, policy: CheckPolicy) -> bool:
    if policy.comparator == "<=":
        return x <= policy.threshold
    if policy.comparator == ">=":
        return x >= policy.threshold
    return abs(x) <= policy.threshold


def decide(value: float | None, low: float | None, high: float | None, n: int,
           policy: CheckPolicy, min_n: int) -> tuple[str, str]:
    """Verdict and a short reason for one measured value."""
    if value is None or not math.isfinite(value):
        return UNKNOWN, "value could not be computed"
    if n < min_n:
        return INCONCLUSIVE, f"n = {n} < {min_n}"
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        low = high = value
    if policy.comparator == "abs<=":
        if -policy.threshold <= low and high <= policy.threshold:
            return PASS, ""
        if low > policy.threshold or high < -policy.threshold:
            return FAIL, ""
        return INCONCLUSIVE, "interval straddles the threshold"
    if _passes(low, policy) and _passes(high, policy):
        return PASS, ""
    if not _passes(low, policy) and not _passes(high, policy):
        return FAIL, ""
    return INCONCLUSIVE, "interval straddles the threshold"


@dataclass(frozen=True)
class FormatSamples:
    """Per-sample arrays of every role in one format."""

    base: RoleSamples | None
    unlearned: RoleSamples | None
    retrain: RoleSamples | None


def _field(samples: RoleSamples | None, metric: str) -> np.ndarray | None:
    if samples is None:
        return None
    return getattr(samples, f"{metric}_forget" if metric in FORGET_METRICS else metric)


def _holdout(samples: RoleSamples | None, metric: str) -> np.ndarray | None:
    values = None if samples is None else getattr(samples, f"{metric}_holdout", None)
    return values if values is not None and values.size else None


class CheckEvaluator:
    """Evaluates every configured check for one format against the full-precision row."""

    def __init__(self, config: AuditConfig, seed: int, requested: Iterable[str] | None = None) -> None:
        """`requested`: the probe names of --probes (None: all, as remediate's stop rule uses it)."""
        self.config = config
        self.seed = seed
        self.requested = None if requested is None else frozenset(requested)

    def _metrics(self) -> tuple[str, ...]:
        """The forget metrics with checks: VerbMem and KnowMem always, MCQ when --probes names mcq."""
        return FORGET_METRICS if self.requested is not None and "mcq" in self.requested else MEMORISATION

    def _asked(self, check: str) -> bool:
        return self.requested is None or bool(self.requested & set(check_probes(check)))

    def _not_requested(self, check: CheckResult) -> CheckResult:
        wanted = " or ".join(check_probes(check.check)) or "its probe"
        return CheckResult(check.check, check.family, check.format, NOT_REQUESTED, check.severity, None, None, None,
                           check.threshold, check.comparator, 0,
                           f"not requested: --probes has no {wanted} (left out of the overall verdict)")

    def _only_requested(self, checks: Iterable[CheckResult]) -> tuple[CheckResult, ...]:
        return tuple(c if self._asked(c.check) else self._not_requested(c) for c in checks)

    def _interval(self, statistic: Callable[..., float], sizes: tuple[int, ...]) -> tuple[float, float]:
        return stats.bootstrap_ci(statistic, sizes, seed=self.seed, n_resamples=self.config.bootstrap_resamples,
                                  confidence=self.config.confidence)

    def _result(self, check: str, family: str, fmt: str, value: float | None, interval: tuple[float, float] | None,
                n: int, detail: str, threshold: float | None = None, extras: dict | None = None) -> CheckResult:
        policy = self.config.checks[family]
        if threshold is not None:
            policy = CheckPolicy(threshold, policy.severity, policy.comparator)
        low, high = interval if interval is not None else (None, None)
        verdict, why = decide(value, low, high, n, policy, self.config.min_n)
        message = detail if not why else f"{detail}; {why}" if detail else why
        clean = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731
        return CheckResult(check=check, family=family, format=fmt, verdict=verdict, severity=policy.severity,
                           value=clean(value), ci_low=clean(low), ci_high=clean(high), threshold=policy.threshold,
                           comparator=policy.comparator, n=n, message=message,
                           extras={k: clean(v) if isinstance(v, float) else v for k, v in (extras or {}).items()})

    def _unknown(self, check: str, family: str, fmt: str, reason: str) -> CheckResult:
        policy = self.config.checks[family]
        return CheckResult(check, family, fmt, UNKNOWN, policy.severity, None, None, None,
                           policy.threshold, policy.comparator, 0, reason)

    def _retention_inputs(self, cur: FormatSamples, metric: str, who: str = "unlearned"):
        """(audited, base, base holdout, audited holdout) arrays of one format (`who`: the audited role),
        or None and the reason why they are missing."""
        audited = getattr(cur, who)
        unl, base = _field(audited, metric), _field(cur.base, metric)
        if unl is None or base is None:
            return None, f"{metric} was not measured for both models"
        holdout, unl_holdout = _holdout(cur.base, metric), _holdout(audited, metric)
        if self.config.retention == "floor" and (holdout is None or unl_holdout is None):
            return None, f"{metric} was not measured on holdout records (the non-member floor)"
        if base.mean() <= 0:
            return None, f"the base model shows no {metric} on the forget set here: nothing to retain"
        if self.config.retention == "floor" and not base.mean() > holdout.mean():
            return None, (f"the base model's forget {metric} {base.mean():.3f} is not above its holdout floor "
                          f"{holdout.mean():.3f}: nothing to retain")
        return (unl, base, holdout, unl_holdout), ""

    def _retention_stat(self, unl, base, holdout, unl_holdout):
        """statistic(i, j) of forget indices i and holdout indices j (j ignored in ratio mode)."""
        mode = self.config.retention
        return lambda i, j: retention(mode, unl, base, holdout, unl_holdout, i, j)

    def _sizes(self, unl: np.ndarray, holdout: np.ndarray | None) -> tuple[int, ...]:
        return (unl.size, holdout.size) if self.config.retention == "floor" else (unl.size,)

    def _boot(self, stat: Callable[..., float], sizes: tuple[int, ...]) -> tuple[float, float]:
        """Interval of a statistic(i, j): forget and holdout resampled separately (j fixed when there is
        no second group to resample)."""
        if len(sizes) == 2 and sizes[1] > 1:
            return self._interval(stat, sizes)
        return self._interval(lambda i: stat(i, None), sizes[:1])

    def _describe(self, metric: str, unl, base, holdout, unl_holdout) -> str:
        raw = ratio_of_means(unl, base)
        if metric == "mcq" and self.config.retention == "floor":
            return (f"(unlearned acc {unl.mean():.3f} - chance {holdout.mean():.3f}) / (base acc {base.mean():.3f} - "
                    f"chance {holdout.mean():.3f}); chance = mean 1/n_choices over {holdout.size} forget questions "
                    f"(lm-eval acc); raw ratio {raw:.3f}")
        if self.config.retention == "ratio":
            return f"unlearned/base {metric} = {unl.mean():.3f}/{base.mean():.3f} (raw ratio)"
        return (f"(unlearned {unl.mean():.3f} - floor {holdout.mean():.3f}) / (base {base.mean():.3f} - floor "
                f"{holdout.mean():.3f}); floor = base {metric} on {holdout.size} holdout records (unlearned's own: "
                f"{unl_holdout.mean():.3f}); raw ratio {raw:.3f}")

    def _extras(self, unl, base, holdout, unl_holdout) -> dict:
        extras = {"raw_ratio": ratio_of_means(unl, base), "unlearned_forget": float(unl.mean()),
                  "base_forget": float(base.mean()), "retention": self.config.retention}
        if holdout is not None and unl_holdout is not None:
            extras.update(floor=float(holdout.mean()), unlearned_holdout=float(unl_holdout.mean()),
                          n_holdout=int(holdout.size))
        return extras

    def forget_retention(self, fmt: str, cur: FormatSamples, metric: str) -> CheckResult:
        check = f"forget_retention.{metric}"
        inputs, why = self._retention_inputs(cur, metric)
        if inputs is None:
            return self._unknown(check, "forget_retention", fmt, why)
        unl, base, holdout, unl_holdout = inputs
        stat = self._retention_stat(*inputs)
        sizes = self._sizes(unl, holdout)
        n = int(min(sizes)) if self.config.retention == "floor" else int(unl.size)
        value = stat(None, None)
        detail = self._describe(metric, *inputs)
        extras = self._extras(*inputs)
        ret_inputs, _ = self._retention_inputs(cur, metric, "retrain") if cur.retrain is not None else (None, "")
        if ret_inputs is None:
            return self._result(check, "forget_retention", fmt, value, self._boot(stat, sizes), n, detail,
                                extras=extras)
        # with a retrain model the fair bar is its own retention at this precision
        margin = self.config.retrain_margin
        ret_stat = self._retention_stat(*ret_inputs)
        ret_value = ret_stat(None, None)
        low, high = self._boot(lambda i, j: stat(i, j) - ret_stat(i, j), sizes)
        detail += f"; retrain retention {ret_value:.3f} + margin {margin:.2f}"
        extras["retrain_retention"] = ret_value
        return self._result(check, "forget_retention", fmt, value, (low + ret_value, high + ret_value),
                            n, detail, threshold=ret_value + margin, extras=extras)

    def recovery(self, fmt: str, cur: FormatSamples, ref: FormatSamples, metric: str) -> CheckResult:
        check = f"recovery.{metric}"
        here, why = self._retention_inputs(cur, metric)
        there, why_fp = self._retention_inputs(ref, metric)
        if here is None or there is None:
            return self._unknown(check, "recovery", fmt, why or f"at fp: {why_fp}")
        stat_here, stat_fp = self._retention_stat(*here), self._retention_stat(*there)
        stat = lambda i, j: stat_here(i, j) - stat_fp(i, j)  # noqa: E731
        sizes = self._sizes(here[0], here[2])
        value = stat(None, None)
        detail = f"retention {stat_here(None, None):.3f} here vs {stat_fp(None, None):.3f} at fp"
        if self.config.retention == "floor":
            detail += (f" (floored; raw ratio {ratio_of_means(here[0], here[1]):.3f} vs "
                       f"{ratio_of_means(there[0], there[1]):.3f})")
        n = int(min(sizes)) if self.config.retention == "floor" else int(here[0].size)
        extras = {"retention_here": stat_here(None, None), "retention_fp": stat_fp(None, None)}
        ret_stat = self._retrain_recovery(cur, ref, metric)
        ret_value = ret_stat(None, None) if ret_stat is not None else float("nan")
        if ret_stat is None or not ret_value > 0:
            return self._result(check, "recovery", fmt, value, self._boot(stat, sizes), n, detail, extras=extras)
        # quantization moves a model that never saw the forget set too (greedy continuations flip): with a
        # retrain model, its own recovery at this format is the fair allowance, never a tighter bar
        low, high = self._boot(lambda i, j: stat(i, j) - ret_stat(i, j), sizes)
        extras["retrain_recovery"] = ret_value
        detail += f"; retrain's own recovery {ret_value:.3f} is allowed on top"
        threshold = self.config.checks["recovery"].threshold + ret_value
        return self._result(check, "recovery", fmt, value, (low + ret_value, high + ret_value), n, detail,
                            threshold=threshold, extras=extras)

    def _retrain_recovery(self, cur: FormatSamples, ref: FormatSamples, metric: str):
        """statistic(i, j) of the retrain model's recovery (its retention here minus at fp), or None."""
        if cur.retrain is None or ref.retrain is None:
            return None
        here, _ = self._retention_inputs(cur, metric, "retrain")
        there, _ = self._retention_inputs(ref, metric, "retrain")
        if here is None or there is None:
            return None
        stat_here, stat_fp = self._retention_stat(*here), self._retention_stat(*there)
        return lambda i, j: stat_here(i, j) - stat_fp(i, j)

    def privleak(self, fmt: str, cur: FormatSamples) -> CheckResult:
        """MUSE's PrivLeak: Min-K% AUC with forget labelled 0 and holdout 1, (AUC_unl - AUC_ref) / AUC_ref x 100.

        AUC_ref is the retrain model's AUC in this format; without --retrain, --privleak-reference-auc
        (e.g. MUSE's published retrain AUCs) or 0.5 (`_published_reference`).
        Negative = under-unlearned. The interval resamples forget and holdout texts separately,
        the same indices for both models (the texts pair up by record).
        """
        check = "privleak"
        if cur.unlearned is None or PRIVLEAK_ATTACK not in cur.unlearned.members:
            return self._unknown(check, "privleak", fmt, "membership inference was not measured")
        mem, non = cur.unlearned.members[PRIVLEAK_ATTACK], cur.unlearned.nonmembers[PRIVLEAK_ATTACK]
        n = int(min(mem.size, non.size))
        if cur.retrain is not None and PRIVLEAK_ATTACK in cur.retrain.members:
            rmem, rnon = cur.retrain.members[PRIVLEAK_ATTACK], cur.retrain.nonmembers[PRIVLEAK_ATTACK]
            stat = lambda i, j: stats.privleak(stats.fast_auc(non[j], mem[i]), stats.fast_auc(rnon[j], rmem[i]))  # noqa: E731
            reference_auc = stats.muse_auc(rmem, rnon)
            ref_text = f"retrain AUC {reference_auc:.3f}"
        else:
            reference_auc, ref_text = self._published_reference()
            stat = lambda i, j: stats.privleak(stats.fast_auc(non[j], mem[i]), reference_auc)  # noqa: E731
        value = stat(np.arange(mem.size), np.arange(non.size))
        auc = stats.muse_auc(mem, non)
        detail = (f"MUSE Min-K% AUC (forget=0, holdout=1) {auc:.3f} vs {ref_text}; "
                  f"{mem.size} forget vs {non.size} holdout texts; negative = under-unlearned")
        return self._result(check, "privleak", fmt, value, self._interval(stat, (mem.size, non.size)), n, detail,
                            extras={"auc_muse": auc, "reference_auc_muse": reference_auc,
                                    "n_members": int(mem.size), "n_nonmembers": int(non.size)})

    def _published_reference(self) -> tuple[float, str]:
        """AUC_ref without a retrain model, and the words the report says about it.

        Default 0.5: a model that never saw the forget set cannot tell forget from holdout texts of one
        distribution. MUSE's code instead divides by its benchmark's retrain AUCs (News 0.4772, Books 0.5393),
        which `--privleak-reference-auc` reproduces.
        """
        given = self.config.privleak_reference_auc
        if given is not None:
            return given, f"reference AUC {given:g} (--privleak-reference-auc; no --retrain)"
        return 0.5, ("reference AUC 0.5 (no --retrain: a model that never saw the forget set cannot tell forget "
                     "from holdout; MUSE's tables divide by their retrain AUCs, see --privleak-reference-auc)")

    def utility(self, fmt: str, cur: FormatSamples) -> CheckResult:
        check = "utility"
        unl = cur.unlearned.knowmem_retain if cur.unlearned else None
        base = cur.base.knowmem_retain if cur.base else None
        if unl is None or base is None or unl.size == 0:
            hint = "" if self.requested is None or "knowmem" in self.requested else \
                " (the utility check reads KnowMem on retain: add knowmem to --probes)"
            return self._unknown(check, "utility", fmt, "KnowMem on retain was not measured" + hint)
        if base.mean() <= 0:
            return self._unknown(check, "utility", fmt, "the base model answers no retain question here")
        value = ratio_of_means(unl, base)
        detail = f"unlearned/base retain KnowMem = {unl.mean():.3f}/{base.mean():.3f}"
        return self._result(check, "utility", fmt, value,
                            self._interval(lambda i: ratio_of_means(unl[i], base[i]), (unl.size,)), int(unl.size), detail)

    def mcq_utility(self, fmt: str, cur: FormatSamples) -> CheckResult:
        """Retain MCQ accuracy above chance, unlearned relative to base: (acc_U - c) / (acc_B - c), c = mean 1/k."""
        check = "utility.mcq"
        unl = cur.unlearned.mcq_retain if cur.unlearned else None
        base = cur.base.mcq_retain if cur.base else None
        if unl is None or base is None or cur.base.mcq_retain_chance is None:
            return self._unknown(check, "utility", fmt, "retain MCQ accuracy was not measured (no retain MCQ records)")
        chance = cur.base.mcq_retain_chance
        if not base.mean() > chance.mean():
            return self._unknown(check, "utility", fmt, f"the base model's retain MCQ accuracy {base.mean():.3f} is "
                                 f"not above chance {chance.mean():.3f}: nothing to preserve")
        stat = lambda i: (unl[i].mean() - chance[i].mean()) / (base[i].mean() - chance[i].mean())  # noqa: E731
        detail = (f"retain MCQ (unlearned acc {unl.mean():.3f} - chance {chance.mean():.3f}) / "
                  f"(base acc {base.mean():.3f} - chance {chance.mean():.3f})")
        return self._result(check, "utility", fmt, stat(np.arange(unl.size)), self._interval(stat, (unl.size,)),
                            int(unl.size), detail)

    def evaluate(self, fmt: str, cur: FormatSamples, ref: FormatSamples | None,
                 is_reference: bool) -> tuple[CheckResult, ...]:
        """All checks for one format; `ref` is the full-precision row, `is_reference` true for fp itself."""
        metrics = self._metrics()
        results = [self.forget_retention(fmt, cur, m) for m in metrics]
        if not is_reference:
            results += [self.recovery(fmt, cur, ref, m) if ref is not None else
                        self._unknown(f"recovery.{m}", "recovery", fmt, "the full-precision row could not be measured")
                        for m in metrics]
        results += [self.privleak(fmt, cur), self.utility(fmt, cur)]
        if "mcq" in metrics:
            results.append(self.mcq_utility(fmt, cur))
        if self._tofu_wanted(cur):
            results += tofu_checks(self, fmt, cur)
        return self._only_requested(results)

    def _tofu_wanted(self, cur: FormatSamples | None) -> bool:
        """TOFU rows appear when --probes asks for tofu (or, with no --probes view, when it was measured):
        audits that never ask for it keep their rows unchanged."""
        if self.requested is not None:
            return "tofu" in self.requested
        return cur is not None and has_tofu(cur)

    def unknown_row(self, fmt: str, reason: str, is_reference: bool) -> tuple[CheckResult, ...]:
        """Every check UNKNOWN, for a format that could not be measured."""
        metrics = self._metrics()
        checks = [(f"forget_retention.{m}", "forget_retention") for m in metrics]
        if not is_reference:
            checks += [(f"recovery.{m}", "recovery") for m in metrics]
        checks += [("privleak", "privleak"), ("utility", "utility")]
        checks += [("utility.mcq", "utility")] if "mcq" in metrics else []
        if self._tofu_wanted(None):
            checks += list(TOFU_CHECKS)
        return self._only_requested(self._unknown(c, fam, fmt, reason) for c, fam in checks)
