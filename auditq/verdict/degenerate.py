"""A degenerate audit: UNLEARNED's weights are BASE's (issue 24 class 5). Never a PASS.

When every weight file of UNLEARNED has the same sha256 as one of BASE's, the unlearning changed
nothing: whatever the probes say, no forgetting happened. Usually the probes agree (forget retention is
1.0, a FAIL), but not always: a BASE that never learned the forget set, a run with `--probes mia`, or a
suite too small to decide can leave checks that PASS, and a PASS would certify an unlearning that does
not exist. The same holds for a --retrain that is BASE's weights (RETRAIN_IDENTICAL): every comparison with
the gold reference then compares with BASE. So, after the checks and the waivers:

- every measured check's message starts with IDENTICAL (the report says it on every row, in every writer);
- a PASS becomes INCONCLUSIVE (the measurement stands; the conclusion "it forgot" does not follow);
- FAIL, INCONCLUSIVE and UNKNOWN stay what they are; a waived check stays waived (a person accepted it),
  but the overall verdict is never PASS: if nothing else remains it is INCONCLUSIVE.

The comparison uses the file hashes the audit computes anyway for the result cache key (no extra read).
A re-saved copy (other shard layout or metadata) has other file bytes and is not caught here; its probes
then measure retention near 1.0, a FAIL.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from auditq.errors import EXIT_FAIL
from auditq.result.model import INCONCLUSIVE, NOT_REQUESTED, PASS, CheckResult

IDENTICAL = "UNLEARNED is identical to BASE (every weight file has the same sha256): the unlearning changed nothing"
#: --retrain given as BASE's weights: the gold reference saw the forget set, so "as forgotten as RETRAIN" and
#: PrivLeak against RETRAIN measure UNLEARNED against BASE itself and would PASS an unlearning that did nothing
RETRAIN_IDENTICAL = ("RETRAIN is identical to BASE (every weight file has the same sha256): the reference saw the "
                     "forget set, so comparisons with it prove nothing")
WEIGHT_SUFFIXES = (".safetensors",)


def identical_weights(base_files: Mapping[str, str], unlearned_files: Mapping[str, str]) -> bool:
    """True when both checkpoints have weight files and their sha256 multisets are equal."""
    def weights(files: Mapping[str, str]) -> list[str]:
        return sorted(h for name, h in files.items() if name.endswith(WEIGHT_SUFFIXES))

    base, unlearned = weights(base_files), weights(unlearned_files)
    return bool(base) and base == unlearned


def mark_identical(check: CheckResult, reason: str = IDENTICAL, role: str = "unlearned") -> CheckResult:
    """The check with `reason` in front of its message; a PASS made INCONCLUSIVE (NOT_REQUESTED left alone)."""
    if check.verdict == NOT_REQUESTED:
        return check
    verdict = INCONCLUSIVE if check.verdict == PASS else check.verdict
    extras = {**check.extras, f"{role}_identical_to_base": True}
    return replace(check, verdict=verdict, message=f"{reason}; {check.message}", extras=extras)


def never_pass(verdict: str, exit_code: int, fail_on: str | None, allow_inconclusive: bool) -> tuple[str, int]:
    """The overall verdict of a degenerate audit: a PASS (every gating check waived) becomes INCONCLUSIVE,
    exiting as auditq.verdict.policy.gate exits on INCONCLUSIVE under the same --fail-on."""
    if verdict != PASS:
        return verdict, exit_code
    fail_on = fail_on or ("fail" if allow_inconclusive else "inconclusive")
    return INCONCLUSIVE, EXIT_FAIL if fail_on == "inconclusive" else exit_code
