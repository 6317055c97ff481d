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


def _qa_text(template: str, record: Any) -> str:
    prompt = template.format(question=record.question)
    return prompt + ("" if prompt.endswith((" ", "\n")) else " ") + record.answer


def _template_source(suite: Suite) -> str:
    toml = suite.path / "suite.toml"
    return f"{toml} [probes] qa_template" if toml.is_file() else "qa_template (default)"


def check_template_length(suite: Suite, template: str, answer_tokens: int, tokenizer, context: int) -> None:
    """The qa_template alone (its text without the question), plus KnowMem's answer_tokens to generate, must fit
    the model's context: otherwise every QA prompt is too long and the audit would run for minutes on prompts
    the model cannot read. Checked once on the template before any record is rendered with it (a 10 MB template
    is tokenized once, not once per question)."""
    if not suite.forget.qa and not suite.holdout.qa and not suite.retain.qa:
        return
    bare = template.replace("{question}", "").replace("{{", "{").replace("}}", "}")
    length = len(tokenizer.encode(bare, add_special_tokens=False).ids)
    if length + answer_tokens + 1 > context:
        raise InputError(f"{_template_source(suite)} is {length} tokens before any question (+ answer_tokens = "
                         f"{answer_tokens} to generate), longer than the model's context (max_position_embeddings = "
                         f"{context}); shorten the template")


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
    template = suite.settings.qa_template
    if context:
        check_template_length(suite, template, _effective(settings, suite, "answer_tokens"), tokenizer, context)
    for split in SPLITS:
        part = suite.split(split)
        # a QA pair as KnowMem prompts it and MIA (mia_qa) scores it: the qa_template's prompt, then the answer
        texts = [(r.id, r.text) for r in part.texts] + [(r.id, _qa_text(template, r)) for r in part.qa]
        if not texts:
            continue
        file = suite.path / (split + ".jsonl")
        check_record_chars(texts, tokenizer, context, file)  # bounded before tokenizing (auditq.suite.bounds)
        text_ids = {r.id for r in part.texts}
        encoded = tokenizer.encode_batch([t for _, t in texts], add_special_tokens=False)
        check_ids_in_vocab(((rid, e.ids) for (rid, _), e in zip(texts, encoded)), config.get("vocab_size"), file)
        lengths = [len(e.ids) for e in encoded]
        if context:
            for (record_id, _), length in zip(texts, lengths):
                if length + 1 > context:
                    shape = "" if record_id in text_ids else " (as the qa_template prompt plus its answer)"
                    raise InputError(f"{suite.path / (split + '.jsonl')}: record {record_id!r} is {length} tokens"
                                     f"{shape}, longer than the model's context (max_position_embeddings = {context}); "
                                     "split or shorten it")
        if split == "forget" and "verbmem" in probes:
            text_lengths = lengths[:len(part.texts)]
            if text_lengths and max(text_lengths) < prefix + 1:
                raise InputError(f"{where_prefix} = {prefix}: every forget text is at most {max(text_lengths)} tokens, "
                                 f"so VerbMem has no continuation to score (expected texts of more than {prefix} tokens; "
                                 "lower prefix_tokens or use longer texts)")
