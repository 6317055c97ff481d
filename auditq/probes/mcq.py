"""MCQ: multiple-choice accuracy by the log-likelihood of each choice, as lm-eval 0.4.13 computes it.

What lm-eval does for a task with `output_type: multiple_choice` (lm_eval/api/task.py
construct_requests / process_results, lm_eval/api/model.py _encode_pair, lm_eval/models/huggingface.py
tok_encode and _loglikelihood_tokens), reproduced here:

- request per choice: context = the prompt (here the suite's `qa_template` filled with the question),
  continuation = target_delimiter + choice, target_delimiter = " ";
- trailing whitespace of the context moves to the front of the continuation;
- whole = tokenizer.encode(context + continuation), ctx = tokenizer.encode(context) (the tokenizer's own
  special tokens, i.e. BOS where it adds one), continuation tokens = whole[len(ctx):];
- ll = sum over the continuation tokens of log p(token | everything before it);
- acc = [argmax_i ll_i == gold], acc_norm = [argmax_i ll_i / len(choice_i) == gold] with len in
  characters of the choice WITHOUT the delimiter, acc_bytes the same with UTF-8 bytes;
  np.argmax, so a tie goes to the first choice.

Differences from lm-eval, deliberate: no left truncation to the model's max length (suites are checked
against it before any model runs), no empty-context branch (a question is never empty), and the string
is never checked for a literal BOS prefix (lm-eval's has_bos_prefix).

Per question the probe keeps acc, acc_norm, acc_bytes, the predicted and gold indices and the number
of choices (chance = 1/n_choices, the floor of MCQ retention in auditq.verdict.scoring); the choice
log-likelihoods go to info["loglikelihoods"] (record id -> list), so a report can be compared with
lm-eval's per-choice output.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from auditq.backends.base import LanguageModel
from auditq.errors import InputError
from auditq.probes.base import Probe, ProbeOutput, ProbeSettings, Sample
from auditq.suite.records import MCQRecord, Suite

SPLITS = ("forget", "retain")
#: lm-eval's default target_delimiter
TARGET_DELIMITER = " "
SCORES = ("acc", "acc_norm", "acc_bytes", "pred", "pred_norm", "gold", "n_choices")


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-eval's causal HFLM splits a request."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = list(tokenizer.encode(context + continuation))
    context_ids = list(tokenizer.encode(context))
    return context_ids, whole[len(context_ids):]


def choice_requests(tokenizer, context: str, choices: Sequence[str]) -> list[tuple[list[int], int]]:
    """One (full sequence, number of continuation tokens) per choice."""
    requests = []
    for choice in choices:
        context_ids, continuation_ids = encode_pair(tokenizer, context, TARGET_DELIMITER + choice)
        if not continuation_ids:
            raise ValueError(f"choice {choice!r} tokenizes to nothing after the context")
        requests.append((context_ids + continuation_ids, len(continuation_ids)))
    return requests


def loglikelihoods(lm: LanguageModel, requests: list[tuple[list[int], int]]) -> list[float]:
    """Sum of the continuation tokens' log-probs of each request (one batched scoring pass)."""
    scored = lm.score_logprobs([sequence for sequence, _ in requests]) if requests else []
    return [float(np.asarray(ts.logprobs, dtype=np.float64)[-n:].sum()) for (_, n), ts in zip(requests, scored)]


def mcq_scores(lls: Sequence[float], choices: Sequence[str], gold: int) -> dict[str, float]:
    """acc, acc_norm and acc_bytes of one question from its choice log-likelihoods (lm-eval's process_results)."""
    lls_arr = np.asarray(lls, dtype=np.float64)
    chars = np.asarray([float(len(c)) for c in choices])
    nbytes = np.asarray([float(len(c.encode("utf-8"))) for c in choices])
    pred, pred_norm, pred_bytes = (int(np.argmax(lls_arr)), int(np.argmax(lls_arr / chars)),
                                   int(np.argmax(lls_arr / nbytes)))
    return {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold), "acc_bytes": float(pred_bytes == gold),
            "pred": float(pred), "pred_norm": float(pred_norm), "gold": float(gold), "n_choices": float(len(choices))}


def chance(output: ProbeOutput, split: str) -> np.ndarray:
    """Per-question chance accuracy 1/n_choices of one split (the floor of MCQ retention)."""
    return 1.0 / output.values(split, "n_choices")


class MultipleChoice(Probe):
    """Forget MCQ (knowledge that should be gone) and retain MCQ (knowledge that should stay)."""

    name = "mcq"
    score_names = SCORES
    splits = SPLITS

    def size(self, suite: Suite) -> int:
        return sum(len(suite.split(name).mcq) for name in SPLITS)

    def check_suite(self, suite: Suite) -> None:
        if not suite.forget.mcq:
            raise InputError(f"{suite.path / 'forget.jsonl'}: the mcq probe needs multiple-choice records "
                             "({\"question\", \"choices\", \"answer\": index}) in the forget split; add them "
                             "or leave mcq out of --probes")

    def run(self, lm: LanguageModel, tokenizer, suite: Suite, settings: ProbeSettings) -> ProbeOutput:
        items: list[tuple[str, MCQRecord, str]] = [
            (name, record, settings.qa_template.format(question=record.question))
            for name in SPLITS for record in suite.split(name).mcq]
        requests = [choice_requests(tokenizer, context, record.choices) for _, record, context in items]
        flat = loglikelihoods(lm, [r for per_question in requests for r in per_question])
        samples: list[Sample] = []
        lls_by_id: dict[str, list[float]] = {}
        start = 0
        for (split, record, context), per_question in zip(items, requests):
            lls = flat[start:start + len(per_question)]
            start += len(per_question)
            scores = mcq_scores(lls, record.choices, record.answer)
            lls_by_id[f"{split}/{record.id}"] = lls
            samples.append(Sample(split=split, record_id=record.id, scores=scores, prompt=context,
                                  generation=record.choices[int(scores["pred"])],
                                  reference=record.choices[record.answer]))
        info: dict[str, object] = {"qa_template": settings.qa_template, "target_delimiter": TARGET_DELIMITER,
                                   "loglikelihoods": lls_by_id}
        for split in SPLITS:
            part = [s for s in samples if s.split == split]
            info[f"n_{split}"] = len(part)
            for key in ("acc", "acc_norm"):
                info[f"{key}_{split}"] = sum(s.scores[key] for s in part) / len(part) if part else float("nan")
            info[f"chance_{split}"] = (sum(1 / s.scores["n_choices"] for s in part) / len(part)) if part else float("nan")
        return ProbeOutput(self.name, tuple(samples), info)
