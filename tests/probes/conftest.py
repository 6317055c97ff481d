"""A tiny REAL fixture for the probes: a byte-level BPE tokenizer and a 2-layer Llama that has
memorised a few short texts (and one QA document), built in a few seconds, once per session.

Nothing is mocked: the probes run through TorchCausalLM, transformers' generate, and the
tokenizer exactly as they would on a real checkpoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from auditq.backends.torch_lm import TorchCausalLM
from auditq.suite import QARecord, Split, Suite, TextRecord

#: texts the model is trained to reproduce verbatim (the forget set)
MEMORISED = (
    "The lighthouse keeper counted seven gulls on the northern rock every morning before the fog rolled in.",
    "Marigold soup needs three onions, a spoon of honey and exactly nine minutes of gentle stirring.",
    "In the valley of copper bells the children learned to whistle tunes that echoed across the dam.",
)
#: a QA document, trained in the exact prompt format KnowMem uses, with a next question after the answer
QA_QUESTION = "Who built the glass tower?"
QA_ANSWER = "Mira Tollan"
QA_DOC = f"Question: {QA_QUESTION}\nAnswer: {QA_ANSWER}\nQuestion: Where is the river?\nAnswer: far north\n"
#: texts the model never sees in training (holdout / retain)
UNSEEN = (
    "Quantum engineers measured vibrations inside frozen crystals using a borrowed laser rig.",
    "A parliament of owls debated loudly about zinc prices and forgotten railway timetables.",
    "Desert foxes dig shallow burrows where cactus roots keep the sand cool during summer.",
    "Jazz drummers from the harbour district practise syncopated rhythms on empty paint cans.",
)
#: extra lines only for tokenizer training (so unseen text tokenizes into sensible pieces)
EXTRA = (
    "Question: What colour is the sky?\nAnswer: blue\n",
    "the of and a to in is was for on with as by at from that this",
)


#: full-batch AdamW steps: ~0.6 s, enough for greedy reproduction of every training document
STEPS = 100


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(list(MEMORISED) + list(UNSEEN) + [QA_DOC, *EXTRA], trainer)
    bos = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                        special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _train_model(tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    docs = [tokenizer(t)["input_ids"] for t in (*MEMORISED, QA_DOC)]
    width = max(len(d) for d in docs)
    ids = torch.full((len(docs), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, doc in enumerate(docs):
        ids[row, :len(doc)] = torch.tensor(doc)
        mask[row, :len(doc)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(STEPS):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, float(loss.detach())


@dataclass(frozen=True)
class Tiny:
    """The trained tokenizer and model, plus the corpus they were built from."""

    tokenizer: object
    model: object
    final_loss: float
    memorised: tuple[str, ...] = MEMORISED
    unseen: tuple[str, ...] = UNSEEN
    qa_question: str = QA_QUESTION
    qa_answer: str = QA_ANSWER

    @property
    def bos(self) -> int:
        return int(self.tokenizer.bos_token_id)

    def lm(self, batch_size: int = 16) -> TorchCausalLM:
        return TorchCausalLM(self.model, pad_token_id=self.tokenizer.pad_token_id,
                             eos_token_id=self.tokenizer.eos_token_id, batch_size=batch_size,
                             description="tiny")


@pytest.fixture(scope="session")
def tiny() -> Tiny:
    torch.set_num_threads(1)
    tokenizer = _train_tokenizer()
    model, loss = _train_model(tokenizer)
    return Tiny(tokenizer, model, loss)


def _make_suite(forget_texts=(), forget_qa=(), retain_texts=(), retain_qa=(), holdout_texts=()) -> Suite:
    """A Suite built in memory (probes only read its splits)."""
    def texts(prefix, items):
        return tuple(TextRecord(f"{prefix}-{i}", t) for i, t in enumerate(items))

    def qa(prefix, items):
        return tuple(QARecord(f"{prefix}-qa-{i}", q, a) for i, (q, a) in enumerate(items))

    return Suite(
        path=Path("."), name="tiny", description="",
        forget=Split("forget", texts("forget", forget_texts), qa("forget", forget_qa)),
        retain=Split("retain", texts("retain", retain_texts), qa("retain", retain_qa)),
        holdout=Split("holdout", texts("holdout", holdout_texts), ()),
    )


@pytest.fixture(scope="session")
def make_suite():
    """Factory for in-memory suites: make_suite(forget_texts=..., forget_qa=[(q, a)], ...)."""
    return _make_suite
