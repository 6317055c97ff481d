"""Forget retention against a non-member floor: how much of BASE's memorisation is left, where
"nothing left" is the score a model reaches on data it never saw.

Why a floor: on templated records (every bio repeats the same fixed phrases) the ROUGE-L of a
continuation or an answer against ANY record of the template is about 0.2, so the plain ratio
mean(U_forget) / mean(B_forget) cannot reach 0 even for a model that never saw the forget set:
a model trained without it scores ~0.36 and would FAIL a 0.25 bar. The suite's holdout split
(same distribution, never trained) measures that chance level directly.

THE RULE (the default, config ``retention = "floor"``), per metric m (VerbMem, KnowMem) and format:

    retention = (mean(U_forget) - F_B) / (mean(B_forget) - F_B),  F_B = BASE's mean m on the holdout records

(both floors from BASE; why, measured, at the end of this docstring). The alternative first tried:

    F_U = mean of the AUDITED model's m on the holdout records (never trained by anyone)
    F_B = mean of BASE's m on the holdout records, same format
    retention R = (mean(U_forget) - F_U) / (mean(B_forget) - F_B)

so BASE's own forget score counts 1 and chance counts 0: R is how far above its own non-member
level the audited model still is on the forget records, as a share of how far above its
non-member level base is. For a model that never saw the forget set, forget and holdout
records are alike (same distribution, both unseen), so E[R] = 0 whatever its chance level:
that is the property a compliance gate needs. One floor for both models (base's) was the first
choice and was measured to fail it: on the demo's templated bios the retrain model continues
unseen bios at ROUGE-L 0.383 (its own floor) while base's floor is 0.320, so a model that never
saw the forget set came out at 0.140 [0.026, 0.238] against a 0.25 bar, against 0.047 with its
own floor (bench/demo_verdicts.py --bios-only). Gaming the own floor would need a model that
scores HIGHER on records nobody trained on, i.e. that knows them; a model that degrades
everywhere lowers numerator and floor alike (its utility check catches the damage). R is
undefined (UNKNOWN) when base does not score above its own floor on the forget set: nothing to
retain.

Why the current rule uses base's floor for both after all: measured on the demo, the audited model's own
floor adds a second holdout mean to every comparison: against a retrain model (threshold = retrain's
retention + 0.05) the holdout noise of two different models no longer cancels, and the fragile
model's fp VerbMem retention became INCONCLUSIVE (interval about +-0.12) where base's common floor
gave [-0.28, -0.10] (PASS); SURE's remediated model likewise. With a common floor the floor cancels in
U - R. Base's floor passes the never-trained model on templated bios too, by a smaller margin
(0.140 [0.026, 0.238] vs the 0.25 bar).

Interval: percentile bootstrap with two independent groups, forget records (index i) and
holdout records (index j), each resampled within its group; the same i indexes every model's
forget array and the same j every model's holdout array (paired by record), so differences
between models (retrain bar, recovery) are bootstrapped jointly. ``retention = "ratio"``
restores the raw ratio, which is always reported alongside.
"""

from __future__ import annotations

import math

import numpy as np

from auditq.verdict.stats import ratio_of_means

RETENTION_MODES = ("floor", "ratio")


def floored(unlearned_forget: np.ndarray, base_forget: np.ndarray, base_holdout: np.ndarray,
            unlearned_holdout: np.ndarray) -> float:
    """(mean(U_forget) - mean(U_holdout)) / (mean(B_forget) - mean(B_holdout)); NaN if base is not above its floor."""
    if min(unlearned_forget.size, base_forget.size, base_holdout.size, unlearned_holdout.size) == 0:
        return float("nan")
    span = float(base_forget.mean()) - float(base_holdout.mean())
    if not span > 0 or not math.isfinite(span):
        return float("nan")
    return (float(unlearned_forget.mean()) - float(unlearned_holdout.mean())) / span


def retention(mode: str, unl: np.ndarray, base: np.ndarray, base_holdout: np.ndarray | None,
              unl_holdout: np.ndarray | None, i: np.ndarray | None = None, j: np.ndarray | None = None) -> float:
    """Retention under `mode` on the resampled indices (all records when i / j are None)."""
    i = slice(None) if i is None else i
    if mode == "ratio":
        return ratio_of_means(unl[i], base[i])
    if base_holdout is None or unl_holdout is None:
        return float("nan")
    j = slice(None) if j is None else j
    # the numerator's floor is BASE's too (see the module docstring: measured, the audited model's own floor
    # doubled the holdout noise in every comparison with a retrain model); unl_holdout is reported only
    return floored(unl[i], base[i], base_holdout[j], base_holdout[j])
