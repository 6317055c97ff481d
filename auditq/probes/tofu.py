"""The `tofu` probe: TOFU's per-sample metrics over any backend, as open-unlearning computes them.

For every forget and retain QA record that carries `paraphrased_answer` and `perturbed_answers`
(auditq.suite.records), one sample with:

    prob           exp(-avg NLL) of the answer's tokens + EOS given the prompt (open-unlearning `probability`)
    avg_loss       that avg NLL
    para_loss      avg NLL of the paraphrased answer
    pert_loss      mean of the perturbed answers' avg NLLs
    truth_ratio    exp(-pert_loss) / (exp(-para_loss) + 1e-10) (TOFU's wrong / correct)
    em             exact memorization: share of answer tokens that are the argmax given the true prefix
    es             extraction strength (1 - k/n, open-unlearning's loop)
    rougeL_recall  ROUGE-L recall (rouge-score, Porter stemmer) of a greedy answer against the answer

The formulas live in auditq.probes.tofu_metrics; aggregates (closer_to_1_better on forget, true_better
on retain, model utility, forget quality against --retrain) are in the probe info and auditq.verdict.tofu.

Prompt: the suite's `qa_template` (not a chat template) followed by the answer as the MIA probe joins
them (`qa_as_text`); labels are the tokens after the prompt's own token count, EOS appended, exactly as
open-unlearning's preprocess_chat_instance masks the question. The argmax at each answer position
is the backend's greedy next token given the true prefix (one `generate(prefix, 1)` per position), so
EM and ES work on every backend (torch, llama.cpp) without a vocabulary-sized output.
"""

from __future__ import annotations

import functools

from auditq.backends.base import LanguageModel
from auditq.errors import InputError
from auditq.probes import tofu_metrics as tm
from auditq.probes.base import Probe, ProbeOutput, ProbeSettings, Sample
from auditq.probes.mia import qa_as_text
from auditq.probes.text import decode, encode_sequences
from auditq.suite.records import QARecord, Suite

SPLITS = ("forget", "retain")
SCORES = ("prob", "avg_loss", "para_loss", "pert_loss", "truth_ratio", "em", "es", "rougeL_recall")
#: the truth-ratio aggregate open-unlearning's TOFU config uses per split
AGGREGATORS = {"forget": "closer_to_1_better", "retain": "true_better"}


@functools.lru_cache(maxsize=1)
def _stemmed_scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(generation: str, answer: str) -> float:
    """open-unlearning's `rougeL_recall`: scorer.score(ground truth, generation), Porter stemmer on."""
    return float(_stemmed_scorer().score(answer, generation)["rougeL"].recall)


def tofu_records(suite: Suite, split: str) -> list[QARecord]:
    return [r for r in suite.split(split).qa if r.paraphrased_answer and r.perturbed_answers]


class _Layout:
    """Token ids of one record's prompt + candidate answers, and where each answer's labels start."""

    def __init__(self, tokenizer, template: str, record: QARecord) -> None:
        eos = tokenizer.eos_token_id
        self.prompt = encode_sequences(tokenizer, [template.format(question=record.question)])[0]
        answers = [record.answer, record.paraphrased_answer, *record.perturbed_answers]
        texts = [qa_as_text(template, record.question, a) for a in answers]
        self.full = [ids + ([eos] if eos is not None else []) for ids in encode_sequences(tokenizer, texts)]
        self.has_eos = eos is not None

    def usable(self) -> bool:
        """Every candidate has at least one answer token besides the appended EOS."""
        start = len(self.prompt)
        return all(len(ids) - start >= 1 + int(self.has_eos) for ids in self.full)

    def answer_logprobs(self, logprobs, index: int):
        ids = self.full[index]
        return logprobs[len(self.prompt) - 1: len(ids) - 1]

    def argmax_positions(self) -> list[int]:
        """Label positions EM and ES read: the answer's tokens, the final label (EOS) dropped."""
        ids = self.full[0]
        return list(range(len(self.prompt), len(ids) - 1 if self.has_eos else len(ids)))


class TofuMetrics(Probe):
    """TOFU's answer probability, truth ratio, EM, ES and ROUGE-L recall per forget and retain QA record."""

    name = "tofu"
    score_names = SCORES
    splits = SPLITS

    def size(self, suite: Suite) -> int:
        return sum(len(tofu_records(suite, s)) for s in SPLITS)

    def check_suite(self, suite: Suite) -> None:
        for split in SPLITS:
            lacking = [r.id for r in suite.split(split).qa if not (r.paraphrased_answer and r.perturbed_answers)]
            if lacking or not suite.split(split).qa:
                what = f"record {lacking[0]!r} lacks" if lacking else "no QA record with"
                raise InputError(f"{suite.path / (split + '.jsonl')}: the tofu probe needs 'paraphrased_answer' and "
                                 f"'perturbed_answers' on every {split} QA record ({what} them); add them or "
                                 "leave tofu out of --probes")

    def run(self, lm: LanguageModel, tokenizer, suite: Suite, settings: ProbeSettings) -> ProbeOutput:
        items = [(split, r, _Layout(tokenizer, settings.qa_template, r)) for split in SPLITS
                 for r in tofu_records(suite, split)]
        kept = [item for item in items if item[2].usable()]
        sequences = [ids for _, _, lay in kept for ids in lay.full]
        scored = iter(lm.score_logprobs(sequences) if sequences else [])
        prefixes = [lay.full[0][:p] for _, _, lay in kept for p in lay.argmax_positions()]
        nexts = iter(lm.generate(prefixes, 1) if prefixes else [])
        gens = lm.generate([lay.prompt for _, _, lay in kept], settings.answer_tokens) if kept else []
        samples = []
        for (split, record, lay), generated in zip(kept, gens):
            losses = [tm.avg_loss(lay.answer_logprobs(next(scored).logprobs, i)) for i in range(len(lay.full))]
            positions = lay.argmax_positions()
            preds = [(out[0] if out else -1) for out in (next(nexts) for _ in positions)]
            labels = [lay.full[0][p] for p in positions]
            answer = decode(tokenizer, generated).strip()
            pert = float(sum(losses[2:]) / len(losses[2:]))
            scores = {"prob": tm.probability(losses[0]), "avg_loss": losses[0], "para_loss": losses[1],
                      "pert_loss": pert, "truth_ratio": tm.truth_ratio(losses[1], losses[2:]),
                      "em": tm.exact_memorization(preds, labels), "es": float(tm.extraction_strength(preds, labels)),
                      "rougeL_recall": rouge_l_recall(answer, record.answer)}
            samples.append(Sample(split=split, record_id=record.id, scores=scores,
                                  prompt=settings.qa_template.format(question=record.question),
                                  generation=answer, reference=record.answer))
        return ProbeOutput(self.name, tuple(samples), _info(samples, len(items) - len(kept), settings))


def split_aggregates(samples, split: str) -> dict[str, float]:
    """open-unlearning's aggregates of one split: means, the split's truth-ratio aggregate, model utility."""
    rows = [s.scores for s in samples if s.split == split]
    if not rows:
        return {}
    mean = lambda key: float(sum(r[key] for r in rows) / len(rows))  # noqa: E731
    ratios = [r["truth_ratio"] for r in rows]
    tr = tm.closer_to_1_better(ratios) if split == "forget" else tm.true_better(ratios)
    out = {"prob": mean("prob"), "truth_ratio": tr, "em": mean("em"), "es": mean("es"),
           "rougeL_recall": mean("rougeL_recall")}
    if split == "retain":  # retain_Q_A_Prob, retain_Q_A_ROUGE, retain_Truth_Ratio (no real-authors / world-facts)
        out["model_utility"] = tm.model_utility([out["prob"], out["rougeL_recall"], tr])
    return out


def _info(samples, skipped: int, settings: ProbeSettings) -> dict[str, object]:
    info: dict[str, object] = {"qa_template": settings.qa_template, "answer_tokens": settings.answer_tokens,
                               "n_skipped_tokenization": skipped,
                               "truth_ratio_aggregators": dict(AGGREGATORS),
                               "model_utility_components": ["retain prob", "retain rougeL_recall",
                                                            "retain truth_ratio (true_better)"]}
    for split in SPLITS:
        info[f"n_{split}"] = sum(1 for s in samples if s.split == split)
        info.update({f"{key}_{split}": value for key, value in split_aggregates(samples, split).items()})
    return info
