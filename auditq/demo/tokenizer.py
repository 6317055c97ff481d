"""A tiny byte-level BPE tokenizer for the demo models, trained on the suite text.

Why byte-level BPE without a prefix space: it is the GPT-2 scheme that llama.cpp's
"gpt2" vocabulary reproduces exactly, so the same demo checkpoint can be exported to
GGUF. Vocabulary 1024 keeps the embedding small. A post-processor prepends <s> (BOS)
to every encoding, as Llama tokenizers do, so probes that call `tokenizer(text)` get
the same ids the model was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = (BOS, EOS, PAD)  # ids 0, 1, 2
VOCAB_SIZE = 1024


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE):
    """Train the BPE on `texts` and wrap it as a transformers PreTrainedTokenizerFast.

    Deterministic for the same texts (the BPE trainer breaks count ties by pair order).
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    core.train_from_iterator(list(texts), trainer=trainer)
    bos_id = core.token_to_id(BOS)
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        clean_up_tokenization_spaces=False, model_max_length=512,
    )


def suite_texts(suite) -> list[str]:
    """Every string of the suite (all splits, QA formatted, calibration) in a stable order.

    Holdout text is included on purpose: a tokenizer that had only seen the members would
    split non-member names into more, rarer pieces and bias membership inference.
    """
    template = suite.settings.qa_template
    texts: list[str] = []
    for split in (suite.forget, suite.retain, suite.holdout):
        texts.extend(r.text for r in split.texts)
        texts.extend(template.format(question=r.question) + " " + r.answer + "\n" for r in split.qa)
    texts.extend(suite.calibration_texts())
    return texts


def build_tokenizer(suite, out_dir: Path | str | None = None):
    """Train on the suite; save_pretrained into `out_dir` when given."""
    tokenizer = train_tokenizer(suite_texts(suite))
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer
