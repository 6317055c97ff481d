"""The reference attack compares against a model that never saw the forget set (--reference, else the
retrain model), never against BASE (which saw it: BASE against itself is AUC 0.5 by construction)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from report_helpers import save_memorising_checkpoint

from auditq.audit.pipeline import run_audit
from auditq.audit.request import audit_request
from auditq.probes.mia import membership_scores
from auditq.verdict import stats


@pytest.fixture(scope="module")
def trio(memorised, tmp_path_factory):
    """base, unlearned (= a copy of base) and a differently seeded memorising model as 'retrain'."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trio")
    retrain = save_memorising_checkpoint(root / "retrain", seed=1)
    unlearned = Path(shutil.copytree(memorised["base"], root / "unlearned"))
    return {**memorised, "unlearned": unlearned, "retrain": retrain}


def _audit(trio, **extra):
    request = audit_request(base=trio["base"], unlearned=trio["unlearned"], suite=trio["suite"], formats=("fp",),
                            batch_size=4, **extra)
    return run_audit(request)


def test_no_reference_attack_without_a_model_that_never_saw_the_forget_set(trio):
    outcome = _audit(trio)
    fmt = outcome.report.formats[0]
    for role, metrics in fmt.roles.items():
        assert "ref" not in metrics.mia, role
        assert "mink" in metrics.mia
    assert "not run" in fmt.details["reference_attack"] and "--retrain" in fmt.details["reference_attack"]


def test_reference_attack_uses_the_retrain_model(trio):
    outcome = _audit(trio, retrain=trio["retrain"])
    fmt = outcome.report.formats[0]
    assert "retrain" in fmt.details["reference_attack"]
    runs = {(r.format, r.role): r for r in outcome.runs}
    unl, ret, base = (runs[("fp", role)].outputs["mia"] for role in ("unlearned", "retrain", "base"))
    expected = stats.roc_auc(membership_scores(unl, "forget", "ref", reference=ret),
                             membership_scores(unl, "holdout", "ref", reference=ret))
    assert fmt.roles["unlearned"].mia["ref"].auc == pytest.approx(expected)
    # what the old code did: BASE as the reference; unlearned == base here, so every ref score is 0 and AUC 0.5
    against_base = membership_scores(unl, "forget", "ref", reference=base)
    assert np.all(against_base == 0) and expected != pytest.approx(0.5)
