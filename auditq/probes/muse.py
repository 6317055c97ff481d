"""VerbMem and KnowMem built as MUSE builds them (``--protocol muse``), so numbers compare with MUSE tables.

MUSE's code (swj0419/muse_bench, metrics/verbmem.py and metrics/knowmem.py), re-implemented:

VerbMem
    MUSE's data is (prompt, gt) string pairs. From an auditq text record the pair is the decoded
    first ``prefix_tokens`` tokens and the decoded rest. Each string is then tokenized on its own
    with the tokenizer's special tokens, as MUSE does: the prompt gets its BOS, and the truth is
    cut to its first ``max_new_tokens`` ids *including its BOS*, so a BOS-adding tokenizer leaves
    127 truth tokens for 128 generated ones. The model greedily generates ``max_new_tokens`` (128
    unless --max-new-tokens is given) tokens, stopping at EOS; the generation is NOT cut to the
    truth's length. Both are decoded with ``skip_special_tokens=True,
    clean_up_tokenization_spaces=True``; score = ROUGE-L F1 (rouge-score, no stemmer).

KnowMem
    Prompt = for each in-context example ``"Question: {q}\\nAnswer: {a}\\n\\n"``, then
    ``"Question: {q}\\nAnswer: "`` (trailing space), tokenized with special tokens; greedy
    ``answer_tokens`` (32) tokens; decoded as above; cut before the first "\\n\\n", then
    "\\nQuestion", then "Question:" (MUSE's get_prefix_before_words_occur, no strip); ROUGE-L F1
    against the answer. MUSE ships its own in-context files (forget_qa_icl / retain_qa_icl);
    auditq takes the suite's first ``MUSE_ICL_EXAMPLES`` retain QA pairs as the examples for
    every split and leaves those pairs out of the scored retain QA (a question is never its own
    example).

Holdout (auditq's addition)
    MUSE scores VerbMem on the forget split only. auditq also continues the holdout texts (never
    trained) exactly the same way, in a generate call of their own so the forget generations and
    scores are MUSE's unchanged; the holdout score is the non-member floor that floored retention and
    recovery read (auditq.verdict.retention). KnowMem's holdout QA is the same kind of addition. The
    reports' protocol note says so.

Differences that remain: MUSE generates one prompt at a time; auditq batches with left padding
and an attention mask (same greedy tokens up to floating-point noise).
"""

from __future__ import annotations

from auditq.backends.base import LanguageModel
from auditq.probes.base import ProbeOutput, ProbeSettings, Sample
from auditq.probes.text import encode_bodies, rouge_l_f1
from auditq.suite.records import Suite

PROTOCOLS = ("auditq", "muse")
#: one line per protocol for the reports
PROTOCOL_NOTES = {
    "auditq": "auditq (VerbMem: BOS + prefix, generation cut to the truth's length; KnowMem: the suite's "
              "qa_template, no in-context examples, first line of the answer)",
    "muse": "muse (VerbMem and KnowMem as MUSE's eval code builds them: 128 / 32 new tokens, truth budget counts "
            "BOS, \"Question: {q}\\nAnswer: \" after in-context retain QA examples; VerbMem and KnowMem on holdout "
            "records too, built the same way: auditq's addition, the non-member floor of retention and recovery, "
            "which MUSE does not measure — the forget numbers are MUSE's)",
}
MUSE_VERBMEM_NEW_TOKENS = 128
MUSE_KNOWMEM_NEW_TOKENS = 32
MUSE_ICL_EXAMPLES = 3
MUSE_STOPS = ("\n\n", "\nQuestion", "Question:")


def muse_defaults(protocol: str, max_new_tokens: int, answer_tokens: int) -> tuple[int, int]:
    """(VerbMem, KnowMem) generation lengths: the suite's, or MUSE's 128 / 32 under the muse protocol."""
    from auditq.errors import InputError

    if protocol not in PROTOCOLS:
        raise InputError(f"unknown --protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    if protocol == "muse":
        return MUSE_VERBMEM_NEW_TOKENS, MUSE_KNOWMEM_NEW_TOKENS
    return max_new_tokens, answer_tokens


def muse_decode(tokenizer, ids) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=True)


def muse_encode(tokenizer, text: str) -> list[int]:
    """The string tokenized as MUSE does: ``tokenizer(text, add_special_tokens=True)``."""
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def prefix_before_stops(text: str) -> str:
    for word in MUSE_STOPS:
        text = text.split(word)[0]
    return text


def icl_examples(suite: Suite, n: int = MUSE_ICL_EXAMPLES):
    return tuple(suite.retain.qa[:n])


def icl_prefix(examples) -> str:
    return "".join(f"Question: {r.question}\nAnswer: {r.answer}\n\n" for r in examples)


def verbmem_pairs(tokenizer, texts, prefix_tokens: int) -> list[tuple[int, str, str]]:
    """(index, prompt string, truth string) for every text long enough to have a continuation."""
    pairs = []
    for index, body in enumerate(encode_bodies(tokenizer, list(texts))):
        if len(body) >= prefix_tokens + 1:
            pairs.append((index, muse_decode(tokenizer, body[:prefix_tokens]), muse_decode(tokenizer, body[prefix_tokens:])))
    return pairs


def run_verbmem(name: str, splits: tuple[str, ...], lm: LanguageModel, tokenizer, suite: Suite,
                settings: ProbeSettings) -> ProbeOutput:
    new_len = settings.max_new_tokens
    samples: list[Sample] = []
    skipped = 0
    for split in splits:
        records = suite.split(split).texts
        pairs = verbmem_pairs(tokenizer, [r.text for r in records], settings.prefix_tokens)
        skipped += len(records) - len(pairs)
        generations = lm.generate([muse_encode(tokenizer, p) for _, p, _ in pairs], new_len) if pairs else []
        for (index, prompt, truth), generated in zip(pairs, generations):
            truth_short = muse_decode(tokenizer, muse_encode(tokenizer, truth)[:new_len])
            output = muse_decode(tokenizer, generated)
            samples.append(Sample(split=split, record_id=records[index].id,
                                  scores={"rougeL_f1": rouge_l_f1(output, truth_short)},
                                  prompt=prompt, generation=output, reference=truth_short))
    scores = [s.scores["rougeL_f1"] for s in samples if s.split == "forget"]
    holdout = [s.scores["rougeL_f1"] for s in samples if s.split == "holdout"]
    info = {"protocol": "muse", "n_records": len(suite.forget.texts),
            "n_scored": len(scores), "n_skipped_short": skipped, "prefix_tokens": settings.prefix_tokens,
            "max_new_tokens": new_len, "truth_budget": "max_new_tokens ids including the tokenizer's BOS (as MUSE)",
            "mean_rougeL_f1": sum(scores) / len(scores) if scores else float("nan")}
    if "holdout" in splits:  # auditq's addition: MUSE scores forget only
        info.update(n_holdout=len(holdout),
                    mean_rougeL_f1_holdout=sum(holdout) / len(holdout) if holdout else float("nan"),
                    holdout_note="holdout continued as MUSE continues forget (auditq's addition: the non-member "
                                 "floor of retention); the forget scores are MUSE's")
    return ProbeOutput(name, tuple(samples), info)


def run_knowmem(name: str, splits: tuple[str, ...], lm: LanguageModel, tokenizer, suite: Suite,
                settings: ProbeSettings) -> ProbeOutput:
    examples = icl_examples(suite)
    used = {r.id for r in examples}
    prefix = icl_prefix(examples)
    items = [(split, r) for split in splits for r in suite.split(split).qa if not (split == "retain" and r.id in used)]
    prompt_texts = [prefix + f"Question: {r.question}\nAnswer: " for _, r in items]
    generations = lm.generate([muse_encode(tokenizer, p) for p in prompt_texts],
                              settings.answer_tokens) if items else []
    samples = []
    for (split, record), generated in zip(items, generations):
        output = prefix_before_stops(muse_decode(tokenizer, generated))
        samples.append(Sample(split=split, record_id=record.id, scores={"rougeL_f1": rouge_l_f1(output, record.answer)},
                              prompt=f"Question: {record.question}\nAnswer: ", generation=output,
                              reference=record.answer))
    info: dict[str, object] = {"protocol": "muse", "answer_tokens": settings.answer_tokens,
                               "icl_examples": [r.id for r in examples],
                               "icl_source": f"the suite's first {len(examples)} retain QA pairs (left out of scoring)"}
    for split in splits:
        values = [s.scores["rougeL_f1"] for s in samples if s.split == split]
        info[f"n_{split}"] = len(values)
        info[f"mean_rougeL_f1_{split}"] = sum(values) / len(values) if values else float("nan")
    return ProbeOutput(name, tuple(samples), info)
