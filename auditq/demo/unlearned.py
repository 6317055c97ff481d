"""The demo's two unlearned models (fragile, honest) from base: the two-phase stopping rule, the int4 RTN-cell
projection of the planted failure and its check, and the measurements build.json records for them (QA exact
match, Min-K% AUC, both also after RTN quantization). The recipe is in build.py's docstring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from auditq.demo import train
from auditq.demo.settings import BuildSettings, LogFn
from auditq.errors import MeasurementError
from auditq.unlearning.batching import make_batch
from auditq.unlearning.loop import unlearn
from auditq.unlearning.masks import linear_weight_mask, linear_weights, snapshot
from auditq.unlearning.projection import project_into_rtn_cells


@dataclass(frozen=True)
class Measures:
    """What the build measures on every model it makes (filled in as it goes), for build.json."""

    exact_match: Callable[[torch.nn.Module], dict[str, float]]
    auc: Callable[[torch.nn.Module], float]
    timings: dict[str, float]
    checks: dict[str, dict[str, float]]
    aucs: dict[str, float]


def unlearned_models(out: Path, base, tok, texts: tuple[list[str], list[str], list[str]], settings: BuildSettings,
                     stop: StopRule, say: LogFn, measures: Measures) -> dict[str, list[int]]:
    """The fragile and honest models from base, saved under `out` and measured (also at rtnN); their steps."""
    forget_answers, forget_texts, retain_texts = texts
    timings, checks, aucs = measures.timings, measures.checks, measures.aucs
    steps: dict[str, list[int]] = {}
    for label in ("fragile", "honest"):
        t0 = time.perf_counter()
        model, steps[label] = _unlearned(label, base, tok, forget_answers, forget_texts, retain_texts, settings,
                                         stop, say)
        timings[label] = time.perf_counter() - t0
        train.save_model(model, tok, out / label)
        checks[label] = measures.exact_match(model)
        aucs[label] = measures.auc(model)
        if label == "fragile":
            check_planted_failure(base, model, settings)
        quantized = fake_quantized(model, settings.fragile_bits, settings.fragile_group_size)
        qlabel = f"{label}_rtn{settings.fragile_bits}"
        checks[qlabel], aucs[qlabel] = measures.exact_match(quantized), measures.auc(quantized)
        say(f"  {label}: {fmt_em(checks[label])}, Min-K AUC {aucs[label]:.2f}; at rtn{settings.fragile_bits}: "
            f"{fmt_em(checks[qlabel])}, Min-K AUC {aucs[qlabel]:.2f} ({'+'.join(map(str, steps[label]))} steps, "
            f"{timings[label]:.0f}s)")
    return steps


Done = Callable[[float, float, float], bool]  # (forget QA EM, retain QA EM, Min-K AUC) -> phase over


class StopRule:
    """When an unlearning phase is over: checked every `check_every` steps.

    Keeps the last state whose retain QA was acceptable and rolls back to it (ending the
    phase) if retain QA collapses below `min_retain_ratio` of base's.
    """

    def __init__(self, tok, pairs, template, members, nonmembers, settings: BuildSettings,
                 base_retain_em: float, retrain_auc: float, say: LogFn) -> None:
        self.tok, self.pairs, self.template = tok, pairs, template
        self.members, self.nonmembers = members, nonmembers
        self.settings, self.say = settings, say
        self.min_retain = settings.min_retain_ratio * base_retain_em
        self.max_auc = settings.stop_auc_ratio * retrain_auc

    def answers_gone(self, forget_em: float, retain_em: float, auc: float) -> bool:
        return forget_em <= self.settings.stop_forget_em

    def texts_unrecognisable(self, forget_em: float, retain_em: float, auc: float) -> bool:
        return auc <= self.max_auc

    def bind(self, model, done: Done, every: int | None = None) -> Callable[[int], bool]:
        """`every`: check after that many steps (default settings.check_every). The Min-K phase checks after
        every step: five steps of ascent on all forget text can carry the AUC far below the retrain model's
        (over-unlearning, PrivLeak > 0), and where that happens depends on the machine's float rounding."""
        last_good: dict[str, dict | None] = {"state": None}
        period = every or self.settings.check_every

        def should_stop(step: int) -> bool:
            if step % period:
                return False
            forget_em = train.qa_exact_match(model, self.tok, self.pairs["forget"], self.template)
            retain_em = train.qa_exact_match(model, self.tok, self.pairs["retain"], self.template)
            auc = mink_auc(model, self.tok, self.members, self.nonmembers, self.settings.mink_k)
            self.say(f"  step {step}: forget QA EM {forget_em:.2f}, retain QA EM {retain_em:.2f}, "
                     f"Min-K AUC forget/holdout {auc:.2f}")
            if retain_em < self.min_retain:
                if last_good["state"] is not None:
                    model.load_state_dict(last_good["state"])
                    self.say("  retain QA collapsed: rolled back to the previous check")
                    return True
                return False
            last_good["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return done(forget_em, retain_em, auc)

        return should_stop


def _unlearned(label: str, base, tok, forget_answers, forget_texts, retain_texts, settings: BuildSettings,
               stop: StopRule, say: LogFn):
    """GA + retain-NLL on a copy of base's nn.Linear weights, in the two phases of the module
    docstring; fragile also projects into base's RTN cells after every step."""
    config = settings.fragile if label == "fragile" else settings.honest
    model = _copy(base)
    after_step = None
    how = "unconstrained"
    if label == "fragile":
        originals = snapshot(linear_weights(model))
        how = f"projected into base's int{settings.fragile_bits} RTN cells after every step"

        def after_step(step: int, m) -> None:
            project_into_rtn_cells(m, originals, settings.fragile_bits, settings.fragile_group_size)

    say(f"unlearning {label} ({config.forget_loss.upper()} + {config.retain_weight:g}x "
        f"{config.retain_loss.upper()} on Linear weights, lr {config.lr:g}, {how})")
    phases = (("forget QA pairs, until no answer is exact", forget_answers, stop.answers_gone),
              ("all forget data, until Min-K AUC reaches retrain's", forget_texts, stop.texts_unrecognisable))
    steps = []
    for index, (what, texts, done) in enumerate(phases):
        say(f" phase {len(steps) + 1}: {what}")
        if index and done(0.0, 1.0, mink_auc(model, tok, stop.members, stop.nonmembers, settings.mink_k)):
            say("  already there: phase skipped")  # the QA phase brought the AUC down far enough
            steps.append(0)
            continue
        result = unlearn(model, tok, texts, retain_texts, config, trainable=linear_weight_mask(model),
                         after_step=after_step, should_stop=stop.bind(model, done, every=1 if index else None))
        steps.append(result.steps)
    model.eval()
    return model, steps


@torch.no_grad()
def mink_auc(model, tok, members: list[str], nonmembers: list[str], k: float = 0.4, batch_size: int = 32) -> float:
    """ROC AUC of Min-K% Prob (mean of the lowest max(1, floor(N·k)) token log-probs; higher =
    member) separating `members` from `nonmembers`, sequences encoded as the probes do (BOS + text)."""
    was_training = model.training
    model.eval()
    seqs = [list(tok(text).input_ids) for text in [*members, *nonmembers]]
    scores: list[float] = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start:start + batch_size]
        batch = make_batch(chunk, tok.pad_token_id)
        logp = torch.log_softmax(model(input_ids=batch.ids, attention_mask=batch.mask).logits[:, :-1].float(), -1)
        token_logp = logp.gather(-1, batch.ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        for row, seq in enumerate(chunk):
            values = token_logp[row, : len(seq) - 1].sort().values
            scores.append(float(values[: max(1, int(len(values) * k))].mean()))
    model.train(was_training)
    member_scores = torch.tensor(scores[: len(members)])
    other_scores = torch.tensor(scores[len(members):])
    wins = (member_scores[:, None] > other_scores[None, :]).double().sum()
    ties = (member_scores[:, None] == other_scores[None, :]).double().sum()
    return float((wins + 0.5 * ties) / (len(members) * len(nonmembers)))


def check_planted_failure(base, fragile, settings: BuildSettings) -> None:
    """The fragile model's int-N codes must equal base's in every Linear weight, and nothing else may move."""
    from auditq.formats.rtn import rtn_quantize

    base_params = dict(base.named_parameters())
    linear = linear_weights(fragile)
    for name, param in fragile.named_parameters():
        if name in linear:
            same = torch.equal(rtn_quantize(param, settings.fragile_bits, settings.fragile_group_size),
                               rtn_quantize(base_params[name], settings.fragile_bits, settings.fragile_group_size))
        else:
            same = torch.equal(param, base_params[name])
        if not same:
            raise MeasurementError(f"demo build: the fragile model's {name} left its planted RTN cells")


def _copy(model):
    import copy

    return copy.deepcopy(model)


def fake_quantized(model, bits: int, group_size: int | None):
    from auditq.formats.rtn import rtn_quantize

    clone = _copy(model)
    with torch.no_grad():
        for param in linear_weights(clone).values():
            param.copy_(rtn_quantize(param, bits, group_size))
    return clone


def fmt_em(em: dict[str, float]) -> str:
    return ", ".join(f"{k.replace('_qa_em', '')} QA EM {v:.2f}" for k, v in em.items())
