"""Turn probe outputs into aggregate metrics and the per-sample arrays the checks bootstrap over."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from auditq.probes.base import ProbeOutput
from auditq.probes.mia import ATTACKS, membership_scores
from auditq.result.model import AttackResult, RoleMetrics
from auditq.verdict import stats
from auditq.verdict.curves import compact_roc, metric_intervals

#: the attack PrivLeak is computed with (MUSE: Min-K% Prob, k = 0.4)
PRIVLEAK_ATTACK = "mink"


@dataclass(frozen=True)
class RoleSamples:
    """Per-sample arrays of one model in one format, in suite order (so roles pair up by index)."""

    verbmem_forget: np.ndarray | None
    knowmem_forget: np.ndarray | None
    knowmem_retain: np.ndarray | None
    members: dict[str, np.ndarray]       # attack -> membership scores of forget texts
    nonmembers: dict[str, np.ndarray]    # attack -> membership scores of holdout texts
    retain_nll: np.ndarray | None
    retain_tokens: np.ndarray | None
    #: the same probes on holdout records (never trained): the non-member floor of forget retention
    verbmem_holdout: np.ndarray | None = None
    knowmem_holdout: np.ndarray | None = None
    #: mcq probe: per-question acc (0/1) on forget and retain MCQ; `mcq_holdout` is NOT measured on holdout
    #: records: it is each forget question's chance accuracy 1/n_choices, the floor of MCQ retention (the
    #: retention rule then reads (acc_U - chance) / (acc_B - chance): accuracy above chance, relative to base)
    mcq_forget: np.ndarray | None = None
    mcq_holdout: np.ndarray | None = None
    mcq_retain: np.ndarray | None = None
    mcq_retain_chance: np.ndarray | None = None
    #: the tofu probe's per-sample scores, "<split>.<score>" -> array (auditq.verdict.tofu)
    tofu: dict[str, np.ndarray] | None = None


def _mean(values: np.ndarray | None) -> float | None:
    return None if values is None or values.size == 0 else float(values.mean())


def collect_samples(outputs: dict[str, ProbeOutput], reference: dict[str, ProbeOutput] | None) -> RoleSamples:
    """Extract per-sample arrays; `reference` are the reference model's outputs (for the ref attack).

    The reference must be a model that never saw the forget set (--reference, else the retrain
    model: see `reference_role`); with None the ref attack is not computed.
    """
    verb = outputs.get("verbmem")
    know = outputs.get("knowmem")
    mia = outputs.get("mia")
    util = outputs.get("utility")
    members: dict[str, np.ndarray] = {}
    nonmembers: dict[str, np.ndarray] = {}
    if mia is not None:
        ref_mia = (reference or {}).get("mia")
        for attack in ATTACKS:
            if attack == "ref":
                continue
            members[attack] = membership_scores(mia, "forget", attack)
            nonmembers[attack] = membership_scores(mia, "holdout", attack)
        if ref_mia is not None:
            members["ref"] = membership_scores(mia, "forget", "ref", reference=ref_mia)
            nonmembers["ref"] = membership_scores(mia, "holdout", "ref", reference=ref_mia)
    return RoleSamples(
        verbmem_forget=verb.values("forget", "rougeL_f1") if verb else None,
        knowmem_forget=know.values("forget", "rougeL_f1") if know else None,
        knowmem_retain=know.values("retain", "rougeL_f1") if know else None,
        members=members,
        nonmembers=nonmembers,
        retain_nll=util.values("retain", "nll") if util else None,
        retain_tokens=util.values("retain", "n_tokens") if util else None,
        verbmem_holdout=_split_values(verb, "holdout"),
        knowmem_holdout=_split_values(know, "holdout"),
        **_mcq_arrays(outputs.get("mcq")),
        tofu=_tofu_values(outputs.get("tofu")),
    )


def _mcq_arrays(output: ProbeOutput | None) -> dict[str, np.ndarray | None]:
    """The mcq probe's per-question accuracy and chance (1/n_choices) on forget and retain, None where absent."""
    arrays: dict[str, np.ndarray | None] = {}
    for split, acc_key, chance_key in (("forget", "mcq_forget", "mcq_holdout"),
                                       ("retain", "mcq_retain", "mcq_retain_chance")):
        acc = output.values(split, "acc") if output is not None else np.empty(0)
        arrays[acc_key] = acc if acc.size else None
        arrays[chance_key] = 1.0 / output.values(split, "n_choices") if acc.size else None
    return arrays


def _tofu_values(output: ProbeOutput | None) -> dict[str, np.ndarray] | None:
    if output is None:
        return None
    from auditq.probes.tofu import SCORES, SPLITS

    return {f"{split}.{key}": output.values(split, key) for split in SPLITS for key in SCORES}


def _split_values(output: ProbeOutput | None, split: str) -> np.ndarray | None:
    """ROUGE-L values of one split, None when the probe did not run or has no sample there."""
    if output is None:
        return None
    values = output.values(split, "rougeL_f1")
    return values if values.size else None


#: why the reference attack was not run, when neither --reference nor --retrain was given
NO_REFERENCE = ("reference attack not run: it needs a model that never saw the forget set "
                "(--reference, or the --retrain model); BASE saw it")


def reference_role(available: set[str] | dict) -> str | None:
    """Which model the reference attack compares against: --reference, else the retrain model, else none.

    Never BASE: it was trained on the forget set, so scoring it against itself gives AUC 0.5
    by construction and the unlearned model's ref AUC would mean nothing.
    """
    for role in ("reference", "retrain"):
        if role in available:
            return role
    return None


def role_metrics(role: str, samples: RoleSamples) -> RoleMetrics:
    """Aggregate metrics of one model in one format, with sample counts."""
    mia: dict[str, AttackResult] = {}
    for attack, member in samples.members.items():
        nonmember = samples.nonmembers[attack]
        if member.size and np.isnan(member).all() and np.isnan(nonmember).all():
            continue  # a feature the engine cannot give (Min-K%++ over a top-k endpoint): absent, never scored
        mia[attack] = AttackResult(
            auc=stats.roc_auc(member, nonmember),
            tpr_at_1pct_fpr=stats.tpr_at_fpr(member, nonmember, 0.01),
            tpr_at_01pct_fpr=stats.tpr_at_fpr(member, nonmember, 0.001),
            n_members=int(member.size),
            n_nonmembers=int(nonmember.size),
            **dict(zip(("roc_fpr", "roc_tpr"), compact_roc(member, nonmember))),
        )
    nll = ppl = None
    if samples.retain_nll is not None and samples.retain_nll.size:
        tokens = samples.retain_tokens
        nll = float((samples.retain_nll * tokens).sum() / tokens.sum())
        ppl = float(math.exp(nll))
    counts = {name: int(arr.size) for name, arr in (
        ("verbmem_forget", samples.verbmem_forget), ("knowmem_forget", samples.knowmem_forget),
        ("knowmem_retain", samples.knowmem_retain), ("retain_texts", samples.retain_nll),
        ("verbmem_holdout", samples.verbmem_holdout), ("knowmem_holdout", samples.knowmem_holdout),
        ("mcq_forget", samples.mcq_forget), ("mcq_retain", samples.mcq_retain))
        if arr is not None}
    return RoleMetrics(
        role=role,
        verbmem_forget=_mean(samples.verbmem_forget),
        knowmem_forget=_mean(samples.knowmem_forget),
        knowmem_retain=_mean(samples.knowmem_retain),
        retain_nll=nll,
        retain_ppl=ppl,
        mia=mia,
        n=counts,
        intervals=metric_intervals({"verbmem_forget": samples.verbmem_forget, "knowmem_forget": samples.knowmem_forget,
                                    "knowmem_retain": samples.knowmem_retain}),
    )
