"""Measuring a model during remediation at full precision, with the probes `auditq check` uses: KnowMem (forget +
retain QA), VerbMem (forget texts), Min-K% membership inference (forget vs holdout) and the PrivLeak estimate.
"""

from __future__ import annotations

import torch

from auditq.probes.base import ProbeSettings
from auditq.remediate.records import Measurement
from auditq.suite.records import Suite


def privleak_estimate(auc: float | None, reference_auc: float) -> float:
    """The report's PrivLeak (MUSE's) from Min-K% AUCs with forget = members (`Monitor.auc`):
    AUC_MUSE = 1 − AUC, then (AUC_MUSE − AUC_MUSE,ref) / AUC_MUSE,ref × 100 (< 0: forget text still looks seen)."""
    from auditq.verdict.stats import muse_privleak

    if auc is None or not reference_auc < 1:
        return float("nan")
    return muse_privleak(auc, reference_auc)


class Monitor:
    """Runs KnowMem (forget + retain QA), VerbMem (forget texts) and Min-K% membership inference
    (forget vs holdout texts) on a model in place, at full precision."""

    def __init__(self, tokenizer, suite: Suite, settings: ProbeSettings, batch_size: int = 32) -> None:
        self.tokenizer = tokenizer
        self.suite = suite
        self.settings = settings
        self.batch_size = batch_size

    @torch.no_grad()
    def measure(self, model, step: int = 0, memorisation: bool = True, mia: bool = True) -> Measurement:
        from auditq.backends.torch_lm import TorchCausalLM
        from auditq.probes.knowmem import KnowMem
        from auditq.probes.verbmem import VerbMem

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        was_training = model.training
        model.eval()
        fields: dict = {}
        try:
            lm = TorchCausalLM(model, pad, tok.eos_token_id, batch_size=self.batch_size)
            if memorisation:
                know = KnowMem().run(lm, tok, self.suite, self.settings)
                verb = VerbMem().run(lm, tok, self.suite, self.settings)
                fields.update(knowmem_forget=_mean(know, "forget"), verbmem_forget=_mean(verb, "forget"),
                              knowmem_retain=_mean(know, "retain"), outputs={"knowmem": know, "verbmem": verb})
            if mia:
                fields["mia_auc"] = self.auc(lm)
        finally:
            model.train(was_training)
        return Measurement(step, **fields)

    def auc(self, lm) -> float | None:
        from auditq.probes.mia import MembershipInference, membership_scores
        from auditq.verdict import stats
        from auditq.verdict.scoring import PRIVLEAK_ATTACK

        out = MembershipInference().run(lm, self.tokenizer, self.suite, self.settings)
        members = membership_scores(out, "forget", PRIVLEAK_ATTACK)
        nonmembers = membership_scores(out, "holdout", PRIVLEAK_ATTACK)
        if members.size == 0 or nonmembers.size == 0:
            return None
        return float(stats.roc_auc(members, nonmembers))


def _mean(output, split: str) -> float | None:
    values = output.values(split, "rougeL_f1")
    return float(values.mean()) if values.size else None
