"""KnowMem: can the model still answer questions about the forget set (and the retain set)?"""

from __future__ import annotations

from auditq.backends.base import LanguageModel
from auditq.errors import InputError
from auditq.probes.base import Probe, ProbeOutput, ProbeSettings, Sample
from auditq.probes.text import decode, encode_sequences, first_line, newline_token_ids, rouge_l_f1
from auditq.suite.records import Suite

#: holdout QA (never trained) is the non-member floor of forget KnowMem retention (auditq.verdict.retention)
SPLITS = ("forget", "retain", "holdout")


class KnowMem(Probe):
    """Greedy answer to `qa_template.format(question=...)`, first line only, ROUGE-L F1 vs the answer.

    Run on forget QA (knowledge that should be gone), retain QA (knowledge that should
    stay: MUSE's UtilityPreserve) and holdout QA (questions about records the model never saw:
    the chance level of a templated answer, the floor of forget retention). The suite must
    have holdout QA (`check_suite`). Generation is `answer_tokens` tokens; the decoded text is
    cut at its first newline and stripped, so a model that runs on into another
    "Question:" is scored on its answer only.
    """

    name = "knowmem"
    score_names = ("rougeL_f1",)
    splits = SPLITS

    def size(self, suite: Suite) -> int:
        return sum(len(suite.split(name).qa) for name in SPLITS)

    def check_suite(self, suite: Suite) -> None:
        if not suite.holdout.qa:
            raise InputError(f"{suite.path / 'holdout.jsonl'}: the knowmem probe needs holdout QA records "
                             "(questions about holdout records, never trained: the floor of forget KnowMem "
                             "retention); add them or leave knowmem out of --probes")

    def run(self, lm: LanguageModel, tokenizer, suite: Suite, settings: ProbeSettings) -> ProbeOutput:
        if settings.answer_tokens < 1:
            raise ValueError("knowmem needs answer_tokens >= 1")
        if settings.protocol == "muse":  # MUSE's prompt, in-context examples and answer cut (auditq.probes.muse)
            from auditq.probes.muse import run_knowmem

            return run_knowmem(self.name, SPLITS, lm, tokenizer, suite, settings)
        items = [(name, record) for name in SPLITS for record in suite.split(name).qa]
        prompt_texts = [settings.qa_template.format(question=record.question) for _, record in items]
        prompts = encode_sequences(tokenizer, prompt_texts)
        # only the first line is scored: a row stops at the first token that contains a newline
        generations = lm.generate(prompts, settings.answer_tokens,
                                  stop_token_ids=newline_token_ids(tokenizer)) if prompts else []

        samples: list[Sample] = []
        for (split, record), prompt_text, generated in zip(items, prompt_texts, generations):
            answer = first_line(decode(tokenizer, generated))
            samples.append(Sample(
                split=split,
                record_id=record.id,
                scores={"rougeL_f1": rouge_l_f1(answer, record.answer)},
                prompt=prompt_text,
                generation=answer,
                reference=record.answer,
            ))
        info: dict[str, object] = {"answer_tokens": settings.answer_tokens, "qa_template": settings.qa_template}
        for split in SPLITS:
            values = [s.scores["rougeL_f1"] for s in samples if s.split == split]
            info[f"n_{split}"] = len(values)
            info[f"mean_rougeL_f1_{split}"] = sum(values) / len(values) if values else float("nan")
        return ProbeOutput(self.name, tuple(samples), info)
