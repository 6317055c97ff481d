"""Suite checks that need the tokenizer (tokenizer.json via the light `tokenizers` library): VerbMem needs
forget texts longer than prefix_tokens, and no record may exceed the model's context (a 1 MB record
would otherwise try to allocate tens of GB and turn every row UNKNOWN)."""

from __future__ import annotations

from typing import Any

from auditq.errors import InputError
from auditq.suite.bounds import (
    check_ids_in_vocab,
    check_record_chars,
    check_template_and_specials,
)
from auditq.suite.records import SPLITS, Suite


def _effective(settings: dict[str, Any], suite: Suite, key: str):
    value = settings.get(key)
    return getattr(suite.settings, key) if value is None else value


def check_suite_lengths(suite: Suite, settings: dict[str, Any], probes, tokenizer, config: dict[str, Any]) -> None:
    """InputError naming the split file, the record and the limit; skipped without a tokenizer.json."""
    prefix = _effective(settings, suite, "prefix_tokens")
    where_prefix = "--prefix-tokens" if settings.get("prefix_tokens") is not None else \
        f"{suite.path / 'suite.toml'} [probes] prefix_tokens" if (suite.path / "suite.toml").is_file() else "prefix_tokens (default)"
    if tokenizer is None:
        return
    context = config.get("max_position_embeddings", config.get("n_positions"))
    check_template_and_specials(tokenizer, suite.settings.qa_template, config.get("vocab_size"),
                                f"{suite.path / 'suite.toml'} [probes] qa_template")
    for split in SPLITS:
        part = suite.split(split)
        texts = [(r.id, r.text) for r in part.texts] + [(r.id, f"{r.question} {r.answer}") for r in part.qa]
        if not texts:
            continue
        file = suite.path / (split + ".jsonl")
        check_record_chars(texts, tokenizer, context, file)  # bounded before tokenizing (auditq.suite.bounds)
        encoded = tokenizer.encode_batch([t for _, t in texts], add_special_tokens=False)
        check_ids_in_vocab(((rid, e.ids) for (rid, _), e in zip(texts, encoded)), config.get("vocab_size"), file)
        lengths = [len(e.ids) for e in encoded]
        if context:
            for (record_id, _), length in zip(texts, lengths):
                if length + 1 > context:
                    raise InputError(f"{suite.path / (split + '.jsonl')}: record {record_id!r} is {length} tokens, "
                                     f"longer than the model's context (max_position_embeddings = {context}); "
                                     "split or shorten it")
        if split == "forget" and "verbmem" in probes:
            text_lengths = lengths[:len(part.texts)]
            if text_lengths and max(text_lengths) < prefix + 1:
                raise InputError(f"{where_prefix} = {prefix}: every forget text is at most {max(text_lengths)} tokens, "
                                 f"so VerbMem has no continuation to score (expected texts of more than {prefix} tokens; "
                                 "lower prefix_tokens or use longer texts)")
