"""VerbMem: does the model still continue forget-set text verbatim (MUSE's verbatim memorisation)?"""

from __future__ import annotations

from auditq.backends.base import LanguageModel
from auditq.probes.base import Probe, ProbeOutput, ProbeSettings, Sample
from auditq.probes.text import decode, encode_bodies, rouge_l_f1, special_prefix
from auditq.suite.records import Suite


class VerbMem(Probe):
    """Greedy continuation of each forget text's first `prefix_tokens` tokens, scored by ROUGE-L F1.

    The holdout texts (never trained) are continued the same way: their score is the non-member
    floor that forget retention is measured against (auditq.verdict.retention). `n_records` / `n_scored`
    count forget texts.

    The prompt is the tokenizer's BOS (not counted) plus the text's first `prefix_tokens`
    tokens; the reference is the next `max_new_tokens` tokens of the text, decoded. A text
    with fewer than `prefix_tokens + 1` tokens has no continuation and is skipped (counted in
    info). When a text has fewer than `max_new_tokens` tokens left after the prefix, the
    generation is cut to the reference's token length, so a model that reproduces the text
    exactly scores 1.0 rather than being charged for what it says after the text ends
    (greedy decoding is prefix-consistent, so this equals generating fewer tokens).
    """

    name = "verbmem"
    score_names = ("rougeL_f1",)
    splits = ("forget", "holdout")

    def size(self, suite: Suite) -> int:
        return len(suite.forget.texts) + len(suite.holdout.texts)

    def run(self, lm: LanguageModel, tokenizer, suite: Suite, settings: ProbeSettings) -> ProbeOutput:
        prefix_len, new_len = settings.prefix_tokens, settings.max_new_tokens
        if prefix_len < 1 or new_len < 1:
            raise ValueError("verbmem needs prefix_tokens >= 1 and max_new_tokens >= 1")
        if settings.protocol == "muse":  # MUSE's own construction (auditq.probes.muse)
            from auditq.probes.muse import run_verbmem

            # MUSE scores forget only; holdout, built the same way, is auditq's addition: the retention floor
            return run_verbmem(self.name, ("forget", "holdout"), lm, tokenizer, suite, settings)
        bos = special_prefix(tokenizer)
        # forget texts, then holdout texts (never trained: the non-member floor of forget retention)
        records = [("forget", r) for r in suite.forget.texts] + [("holdout", r) for r in suite.holdout.texts]
        bodies = encode_bodies(tokenizer, [r.text for _, r in records])
        kept = [(record, body) for record, body in zip(records, bodies) if len(body) >= prefix_len + 1]
        prompts = [bos + body[:prefix_len] for _, body in kept]
        references = [body[prefix_len:prefix_len + new_len] for _, body in kept]
        generations = lm.generate(prompts, new_len) if prompts else []

        samples: list[Sample] = []
        short = 0
        for ((split, record), body), reference, generated in zip(kept, references, generations):
            if len(reference) < new_len:
                short += 1
            generation_text = decode(tokenizer, generated[:len(reference)])
            reference_text = decode(tokenizer, reference)
            samples.append(Sample(
                split=split,
                record_id=record.id,
                scores={"rougeL_f1": rouge_l_f1(generation_text, reference_text)},
                prompt=decode(tokenizer, body[:prefix_len]),
                generation=generation_text,
                reference=reference_text,
            ))
        scores = [s.scores["rougeL_f1"] for s in samples if s.split == "forget"]
        holdout = [s.scores["rougeL_f1"] for s in samples if s.split == "holdout"]
        info = {
            "n_records": len(suite.forget.texts),
            "n_scored": len(scores),
            "n_skipped_short": sum(1 for split, _ in records if split == "forget")
            - sum(1 for (split, _), _ in kept if split == "forget"),
            "n_short_reference": short,
            "prefix_tokens": prefix_len,
            "max_new_tokens": new_len,
            "mean_rougeL_f1": sum(scores) / len(scores) if scores else float("nan"),
            "n_holdout": len(holdout),
            "mean_rougeL_f1_holdout": sum(holdout) / len(holdout) if holdout else float("nan"),
        }
        return ProbeOutput(self.name, tuple(samples), info)
