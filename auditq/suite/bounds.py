"""Suite checks that bound the work before and after tokenizing (issue 24, classes 4 and 8): a record too
long for the model's context is refused from its length in characters, before the tokenizer sees it (a
10 MB line took seconds to tokenize only to be refused), and every token id the suite, the QA template
or the tokenizer's special tokens produce must index a row of the model's embedding (vocab_size), or
the first forward pass fails mid-audit ("index out of range in self").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from auditq.errors import InputError

#: safety factor on "a token covers at most the longest vocabulary entry": normalizers may shrink text
SLACK = 4


def max_token_chars(tokenizer: Any) -> int:
    """The longest vocabulary entry in characters (at least 1): no token covers more input than that."""
    return max((len(t) for t in tokenizer.get_vocab(with_added_tokens=True)), default=1) or 1


def check_record_chars(texts: Iterable[tuple[str, str]], tokenizer: Any, context: int | None, file: Path) -> None:
    """Refuse a record whose character count alone proves it longer than the context, without tokenizing it."""
    if not context:
        return
    limit = None  # the vocabulary is scanned only when some record is long enough to matter
    for record_id, text in texts:
        if len(text) <= context * SLACK:
            continue
        limit = limit or context * max_token_chars(tokenizer) * SLACK
        if len(text) > limit:
            raise InputError(f"{file}: record {record_id!r} is {len(text)} characters: longer than the model's "
                             f"context (max_position_embeddings = {context}) at any tokenization (over {limit} "
                             "characters); split or shorten it")


def check_ids_in_vocab(ids_by_record: Iterable[tuple[str, list[int]]], vocab_size: Any, file: Path) -> None:
    """Every token id below config.json's vocab_size (the embedding's rows)."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        return
    for record_id, ids in ids_by_record:
        top = max(ids, default=-1)
        if top >= vocab_size:
            raise InputError(f"{file}: record {record_id!r} tokenizes to id {top}, beyond the embedding "
                             f"(vocab_size = {vocab_size} in config.json): the tokenizer has more tokens than the "
                             "model; use the model's own tokenizer")


def check_template_and_specials(tokenizer: Any, template: str, vocab_size: Any, where: str) -> None:
    """The QA template's own text and the special tokens the tokenizer adds (BOS/EOS) must be in range too."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        return
    ids = tokenizer.encode(template.format(question="x"), add_special_tokens=True).ids
    top = max(ids, default=-1)
    if top >= vocab_size:
        raise InputError(f"{where}: the template with the tokenizer's special tokens gives id {top}, beyond the "
                         f"embedding (vocab_size = {vocab_size} in config.json); use the model's own tokenizer")
