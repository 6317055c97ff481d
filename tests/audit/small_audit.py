"""A small real audit shared by the executor tests (tests/audit/conftest.py builds its checkpoints once)."""

from __future__ import annotations

from auditq.audit.request import audit_request
from auditq.verdict.config import AuditConfig


def small_request(small, **given):
    """BASE, UNLEARNED and RETRAIN in fp and rtn4 unless `given` says otherwise."""
    options = {"base": small["base"], "unlearned": small["unlearned"], "retrain": small["retrain"],
               "suite": small["suite"], "formats": ("fp", "rtn4"),
               "config": AuditConfig(min_n=1, bootstrap_resamples=50), **given}
    return audit_request(**options)


def fingerprint(outcome) -> dict:
    """Verdicts, values and every per-sample score of an audit, keyed so order does not matter."""
    checks = {(c.format, c.check): (c.verdict, c.value, c.ci_low, c.ci_high) for c in outcome.report.all_checks()}
    samples = {(r.format, r.role, name): [(s.split, s.record_id, dict(s.scores), s.generation) for s in out.samples]
               for r in outcome.runs for name, out in r.outputs.items()}
    errors = {(r.format, r.role): r.error for r in outcome.runs}
    return {"verdict": outcome.report.verdict, "checks": checks, "samples": samples, "errors": errors}
