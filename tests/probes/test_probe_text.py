"""Shared text helpers: ROUGE-L as MUSE computes it, answer cutting, BOS handling."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, processors
from transformers import PreTrainedTokenizerFast

from auditq.probes.text import (
    decode,
    encode_bodies,
    encode_sequences,
    first_line,
    rouge_l_f1,
    rouge_scorer,
    special_prefix,
)


def test_rouge_l_f1_hand_values():
    # LCS "the cat on the mat" = 5 of 6 tokens on both sides: P = R = F = 5/6
    assert rouge_l_f1("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # LCS "a c" = 2: P = 2/4, R = 2/3, F = 2PR/(P+R) = 4/7
    assert rouge_l_f1("a b c d", "a c e") == pytest.approx(4 / 7)
    # rouge-score lowercases and drops punctuation; no stemming ("cats" != "cat")
    assert rouge_l_f1("The CAT, sat.", "the cat sat") == 1.0
    assert rouge_l_f1("cats", "cat") == 0.0
    assert rouge_l_f1("", "anything") == 0.0
    assert rouge_scorer() is rouge_scorer()


def test_first_line_cuts_at_first_newline_and_strips():
    assert first_line(" Mira Tollan\nQuestion: Where?\nAnswer: x") == "Mira Tollan"
    assert first_line("  blue  ") == "blue"
    assert first_line("\nblue") == ""


def test_sequences_carry_the_tokenizers_bos_once(tiny):
    tok = tiny.tokenizer
    text = tiny.memorised[0]
    assert special_prefix(tok) == [tiny.bos]
    body = encode_bodies(tok, [text])[0]
    assert tiny.bos not in body
    assert encode_sequences(tok, [text])[0] == [tiny.bos] + body == tok(text)["input_ids"]
    assert decode(tok, [tiny.bos] + body) == text
    assert encode_bodies(tok, []) == []


def test_tokenizer_without_bos_gets_no_prefix(tiny):
    core = Tokenizer.from_str(tiny.tokenizer.backend_tokenizer.to_str())
    core.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")
    plain = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="<pad>")
    assert special_prefix(plain) == []
    text = tiny.unseen[0]
    assert encode_sequences(plain, [text]) == encode_bodies(plain, [text]) == encode_bodies(tiny.tokenizer, [text])
