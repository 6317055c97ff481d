"""Text helpers the probes share: one ROUGE-L scorer, and tokenization with the tokenizer's own BOS.

Every probe must cut text into token ids the same way, or a VerbMem prefix and an MIA
sequence of the same record would disagree about where the text starts. The rule here:
a sequence is the special tokens the tokenizer puts *before* a text (normally just BOS)
followed by the text's own tokens; any special tokens it would append (an EOS, in a few
tokenizers) are left off, since no probe wants to score or continue past an EOS.
"""

from __future__ import annotations

import functools
import weakref
from typing import Sequence

from rouge_score.rouge_scorer import RougeScorer


@functools.lru_cache(maxsize=1)
def rouge_scorer() -> RougeScorer:
    """The one ROUGE-L scorer (MUSE: rouge-score, "rougeL", no stemmer); building one is not free."""
    return RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of `prediction` against `reference` (0.0 when either has no ROUGE tokens)."""
    return float(rouge_scorer().score(target=reference, prediction=prediction)["rougeL"].fmeasure)


def special_prefix(tokenizer) -> list[int]:
    """The ids the tokenizer puts before every text (e.g. [BOS]); [] if it adds none.

    Found by encoding a probe string with and without special tokens, so it works for any
    Hugging Face tokenizer without knowing its class or its `add_bos_token` flag.
    """
    probe = "hello world"
    with_special = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    without = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    n = len(without)
    for start in range(len(with_special) - n + 1):
        if with_special[start:start + n] == without:
            return with_special[:start]
    special = set(tokenizer.all_special_ids)
    prefix: list[int] = []
    for token in with_special:
        if token not in special:
            break
        prefix.append(token)
    return prefix


def encode_bodies(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text on its own, without any special token."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def encode_sequences(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Each text as the model sees it: the tokenizer's special prefix (BOS) plus the text's tokens."""
    prefix = special_prefix(tokenizer)
    return [prefix + body for body in encode_bodies(tokenizer, texts)]


def decode(tokenizer, ids: Sequence[int]) -> str:
    """Token ids to text, special tokens dropped (as MUSE decodes generations and references)."""
    return tokenizer.decode(list(ids), skip_special_tokens=True)


def first_line(text: str) -> str:
    """The answer part of a generation: up to the first newline, stripped.

    The model is free to run on into the next "Question:" of a few-shot style prompt;
    only the first line is its answer.
    """
    return text.split("\n", 1)[0].strip()


_NEWLINE_IDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def newline_token_ids(tokenizer) -> frozenset[int]:
    """Ids of every token whose decoded text contains a newline (computed once per tokenizer object).

    A generation cut right after such a token has the same first line as the whole generation.
    """
    found = _NEWLINE_IDS.get(tokenizer)
    if found is None:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True)
        found = frozenset(i for i, text in enumerate(texts) if "\n" in text)
        _NEWLINE_IDS[tokenizer] = found
    return found
