"""Forget retention against a non-member floor: how much of BASE's memorisation is left, where
"nothing left" is the score a model reaches on data it never saw.

Why a floor: on templated records (every bio repeats the same fixed phrases) the ROUGE-L of a
continuation or an answer against ANY record of the template is about 0.2, so the plain ratio
mean(U_forget) / mean(B_forget) cannot reach 0 even for a model that never saw the forget set:
a model trained without it scores ~0.36 and would FAIL a 0.25 bar. The suite's holdout split
(same distribution, never trained) measures that chance level directly.

Definition (the default, config ``retention = "floor"``), per metric m (VerbMem, KnowMem) and format:

    floor     F = mean over holdout records of BASE's m, in the same format
    retention R = (mean(U_forget) - F) / (mean(B_forget) - F)

so BASE's own forget score counts 1 and the non-member floor counts 0 (a model that knows
less about the forget records than base knows about records it never saw scores below 0).
The floor is BASE's, not the audited model's: both ends of the scale then come from one
model, and the bar does not move with the candidate being audited (an unlearned model that
also degrades on unseen data cannot lower its own floor). R is undefined (UNKNOWN) when base
does not score above its own floor on the forget set: there is nothing to retain.

Interval: percentile bootstrap with two independent groups, forget records (index i) and
holdout records (index j), each resampled within its group; the same i indexes every model's
forget array and the same j every model's holdout array (paired by record), so differences
between models (retrain bar, recovery) are bootstrapped jointly. ``retention = "ratio"``
restores the raw ratio, which is always reported alongside.
"""

from __future__ import annotations

import math

import numpy as np

from auditq.stats import ratio_of_means

RETENTION_MODES = ("floor", "ratio")


def floored(unlearned_forget: np.ndarray, base_forget: np.ndarray, base_holdout: np.ndarray) -> float:
    """(mean(U_forget) - F) / (mean(B_forget) - F), F = mean(B_holdout); NaN if base is not above its floor."""
    if unlearned_forget.size == 0 or base_forget.size == 0 or base_holdout.size == 0:
        return float("nan")
    floor = float(base_holdout.mean())
    span = float(base_forget.mean()) - floor
    if not span > 0 or not math.isfinite(span):
        return float("nan")
    return (float(unlearned_forget.mean()) - floor) / span


def retention(mode: str, unl: np.ndarray, base: np.ndarray, base_holdout: np.ndarray | None,
              i: np.ndarray | None = None, j: np.ndarray | None = None) -> float:
    """Retention under `mode` on the resampled indices (all records when i / j are None)."""
    i = slice(None) if i is None else i
    if mode == "ratio":
        return ratio_of_means(unl[i], base[i])
    if base_holdout is None:
        return float("nan")
    j = slice(None) if j is None else j
    return floored(unl[i], base[i], base_holdout[j])
