"""The gate: one overall verdict and the exit code from the gating (error-severity) checks."""

from __future__ import annotations

from auditq.errors import EXIT_FAIL, EXIT_MEASURE, EXIT_PASS
from auditq.result.model import FAIL, INCONCLUSIVE, PASS, UNKNOWN, CheckResult


def gate(checks: list[CheckResult], allow_inconclusive: bool, fail_on: str | None = None) -> tuple[str, int]:
    """Overall verdict and exit code from the gating (error-severity) checks.

    `fail_on`: "inconclusive" (default) exits 1 on FAIL or INCONCLUSIVE, "fail" (= allow_inconclusive)
    only on FAIL, "never" never exits 1; every policy exits 3 when a gating check is UNKNOWN (a gate
    never swallows a tool failure). WAIVED counts as passing. `fail_on` was checked by the light stage
    (auditq.report.compliance.resolve_fail_on); None is the policy `allow_inconclusive` implies.
    """
    fail_on = fail_on or ("fail" if allow_inconclusive else "inconclusive")
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
