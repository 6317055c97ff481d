"""Helpers for the compliance-gate tests: a memorising tiny checkpoint, an in-process CLI runner,
and a synthetic AuditReport with every verdict (for writer tests that need no measuring)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # gguf_helpers and test_suite live in tests/
    sys.path.insert(0, str(TESTS))

from tiny_memoriser import MEMORISED, QA_ANSWER, QA_QUESTION, UNSEEN, run_cli, save_memorising_checkpoint  # noqa: E402,F401

from auditq.result.model import (  # noqa: E402
    SCHEMA_VERSION,
    SIGN_CONVENTION,
    AttackResult,
    AuditReport,
    CheckResult,
    FormatResult,
    RoleMetrics,
)

DATA = TESTS / "data"

#: the memorising model's corpus (tests/tiny_memoriser.py) as this package's tests name it
QA = (QA_QUESTION, QA_ANSWER)


def _check(check, family, fmt, verdict, severity="error", value=0.9, low=0.8, high=1.0, threshold=0.25,
           comparator="<=", n=40, message="detail", waiver=None) -> CheckResult:
    return CheckResult(check=check, family=family, format=fmt, verdict=verdict, severity=severity, value=value,
                       ci_low=low, ci_high=high, threshold=threshold, comparator=comparator, n=n, message=message,
                       waiver=waiver)


def _roc(auc_like: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (0.0, 0.0, 0.25, 0.5, 1.0), (0.0, auc_like / 2, auc_like, min(1.0, auc_like + 0.1), 1.0)


def _role(role: str, verb: float, know: float, auc: float) -> RoleMetrics:
    fpr, tpr = _roc(auc)
    return RoleMetrics(
        role=role, verbmem_forget=verb, knowmem_forget=know, knowmem_retain=0.6, retain_nll=2.0, retain_ppl=7.39,
        mia={"mink": AttackResult(auc, 0.1, 0.0, 40, 40, roc_fpr=fpr, roc_tpr=tpr)},
        n={"verbmem_forget": 40}, intervals={"verbmem_forget": (max(0, verb - 0.05), verb + 0.05),
                                             "knowmem_forget": (max(0, know - 0.05), know + 0.05),
                                             "knowmem_retain": (0.55, 0.65)})


def make_report(extra_checks: tuple[CheckResult, ...] = (), waivers: tuple = (), exit_code: int = 1,
                verdict: str = "FAIL") -> AuditReport:
    """fp passes; rtn4 has every verdict: gating FAIL / INCONCLUSIVE, warn FAIL / INCONCLUSIVE, UNKNOWN, WAIVED."""
    fp = FormatResult(
        format="fp", details={"engine": "torch"},
        roles={"base": _role("base", 0.8, 0.7, 0.9), "unlearned": _role("unlearned", 0.1, 0.1, 0.55),
               "retrain": _role("retrain", 0.08, 0.1, 0.5)},
        checks=(_check("forget_retention.verbmem", "forget_retention", "fp", "PASS", value=0.12, low=0.1, high=0.15),
                _check("privleak", "privleak", "fp", "PASS", value=5.0, low=-4, high=12, threshold=20, comparator="abs<="),
                _check("utility", "utility", "fp", "PASS", severity="warn", value=0.9, low=0.8, high=1.0,
                       threshold=0.5, comparator=">=")),
        privleak=5.0)
    waived = {"check": "privleak", "format": "rtn4", "reason": "tracked in TICKET-7", "expires": "2030-01-01",
              "source": "auditq-waivers.toml: waivers[0]", "status": "applied", "original_verdict": "FAIL"}
    rtn4 = FormatResult(
        format="rtn4", details={"engine": "auditq-rtn", "note": "a <note> & more"},
        roles={"base": _role("base", 0.78, 0.7, 0.9), "unlearned": _role("unlearned", 0.7, 0.6, 0.85),
               "retrain": _role("retrain", 0.08, 0.1, 0.5)},
        checks=(_check("forget_retention.verbmem", "forget_retention", "rtn4", "FAIL"),
                _check("forget_retention.knowmem", "forget_retention", "rtn4", "INCONCLUSIVE", low=0.2, high=0.9),
                _check("recovery.verbmem", "recovery", "rtn4", "UNKNOWN", value=None, low=None, high=None,
                       message="engine missing"),
                _check("privleak", "privleak", "rtn4", "WAIVED", value=70.0, low=60, high=80, threshold=20,
                       comparator="abs<=", waiver=waived),
                _check("utility", "utility", "rtn4", "FAIL", severity="warn", value=0.3, low=0.2, high=0.4,
                       threshold=0.5, comparator=">="),
                _check("utility.inconclusive", "utility", "rtn4", "INCONCLUSIVE", severity="warn", value=0.5,
                       low=0.3, high=0.7, threshold=0.5, comparator=">="),
                *extra_checks),
        privleak=70.0)
    return AuditReport(
        schema_version=SCHEMA_VERSION, tool_version="0.1.0", created="2026-01-01T00:00:00+00:00",
        arguments={"fail_on": "inconclusive"}, seed=0,
        config={"checks": {"forget_retention": {"threshold": 0.25, "severity": "error", "comparator": "<="},
                           "recovery": {"threshold": 0.1, "severity": "error", "comparator": "<="},
                           "privleak": {"threshold": 20.0, "severity": "error", "comparator": "abs<="},
                           "utility": {"threshold": 0.5, "severity": "warn", "comparator": ">="}}},
        checkpoints={"base": {"path": "models/base", "files": {"model.safetensors": "a" * 64, "config.json": "b" * 64}},
                     "unlearned": {"path": "/abs/models/un learned", "files": {"model.safetensors": "c" * 64}},
                     "retrain": {"path": "models/retrain", "files": {"model.safetensors": "d" * 64}}},
        suite={"path": "probes/demo", "name": "demo", "sha256": "e" * 64,
               "sizes": {s: {"texts": 40, "qa": 10} for s in ("forget", "retain", "holdout")}},
        sign_convention=SIGN_CONVENTION, formats=(fp, rtn4), verdict=verdict, exit_code=exit_code,
        waivers=waivers)
