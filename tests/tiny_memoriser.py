"""Shared test helpers: a tiny REAL memorising model and an in-process CLI runner.

The model is a byte-level BPE tokenizer and a 2-layer Llama trained for a few dozen full-batch steps to
reproduce MEMORISED and a QA document greedily; nothing is mocked.
"""

from __future__ import annotations

import sys

import pytest
import torch

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


def train_tokenizer():
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


def train_model(tokenizer, seed: int = 0):
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


def save_memorising_checkpoint(out, seed: int = 0):
    """Train the tiny memorising model and save it as a Hugging Face checkpoint (safetensors)."""
    torch.manual_seed(seed)
    tokenizer = train_tokenizer()
    model, _ = train_model(tokenizer, seed=seed)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`auditq ARGS` in-process through the real entry point: (exit code, stdout, stderr).

    capsys None: output is not captured.
    """
    from auditq.cli.app import main

    monkeypatch.setattr(sys, "argv", ["auditq", *args])
    with pytest.raises(SystemExit) as info:
        main()
    if capsys is None:
        return int(info.value.code or 0), "", ""
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err
