"""The SURE mask really holds: after remediation every parameter outside it is bit-identical to θ_o."""

from __future__ import annotations

import torch

from auditq.checkpoint.load import load_checkpoint
from auditq.probes.base import ProbeSettings
from auditq.remediate.sure import RemediationPlan, plan_mask, remediate
from auditq.suite.records import load_suite

SETTINGS = ProbeSettings(prefix_tokens=4, max_new_tokens=6, answer_tokens=4)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def _run(tiny, **plan):
    ckpt = load_checkpoint(tiny["base"], "base")
    suite = load_suite(tiny["suite"])
    before = {n: p.detach().clone() for n, p in ckpt.model.named_parameters()}
    # a large lr and a few steps; the stop rule is off (targets 0, no MIA) so every step runs
    config = RemediationPlan(lr=5e-2, steps=3, check_every=100, batch_size=4, target=0.0,
                             privleak_target=float("inf"), **plan)
    result = remediate(ckpt.model, ckpt.tokenizer, suite, config, SETTINGS)
    after = dict(ckpt.model.named_parameters())
    return before, after, result


def test_module_mask_holds_bit_for_bit(tiny):
    before, after, result = _run(tiny, method="sure", percentile=75.0)
    selected = set(result.mask.selected_modules())
    assert 0 < len(selected) < len(result.mask.shapes)
    assert result.unlearn.steps == 3
    for name, param in after.items():
        if name in selected:
            assert not torch.equal(param, before[name]), f"{name} is in the mask but did not move"
        else:
            assert torch.equal(_bits(param), _bits(before[name])), f"{name} moved outside the mask"


def test_row_mask_holds_bit_for_bit(tiny):
    before, after, result = _run(tiny, method="sure", percentile=90.0, granularity="row")
    assert 1 < len(result.mask.selected_modules())
    for name, param in after.items():
        mask = result.mask.trainable.get(name, False)
        if isinstance(mask, torch.Tensor):
            assert torch.equal(_bits(param[~mask]), _bits(before[name][~mask])), f"{name}: a frozen row moved"
            if mask.any():
                assert not torch.equal(param[mask], before[name][mask]), f"{name}: a trainable row did not move"
        elif not mask:
            assert torch.equal(_bits(param), _bits(before[name])), f"{name} moved outside the mask"


def test_plain_ga_moves_linear_weights_only(tiny):
    before, after, result = _run(tiny, method="ga")
    linear = set(result.mask.selected_modules())
    assert linear == set(result.mask.shapes) and "lm_head.weight" in linear
    for name, param in after.items():
        if name in linear:
            assert not torch.equal(param, before[name])
        else:  # embeddings and norms
            assert torch.equal(_bits(param), _bits(before[name])), name


def test_plan_mask_percentile_selects_top_fraction(tiny):
    ckpt = load_checkpoint(tiny["base"], "base")
    suite = load_suite(tiny["suite"])
    mask = plan_mask(ckpt.model, ckpt.tokenizer, suite, RemediationPlan(percentile=90.0))
    scores = mask.module_scores
    top = max(scores, key=scores.get)
    assert top in mask.selected_modules()
    assert all(scores[name] >= mask.gamma for name in mask.selected_modules())
    assert all(scores[name] < mask.gamma for name in scores if name not in mask.selected_modules())
    assert len(mask.selected_modules()) == sum(1 for s in scores.values() if s >= mask.gamma) <= 2  # 15 modules, top 10%
