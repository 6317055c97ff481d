"""A tiny TRAINED Llama for the GPTQ/AWQ/bitsandbytes tests, built once per test session.

Why trained: on a random-init model NLL is meaningless (quantization moves it up or down
at random), so "GPTQ beats RTN on retain NLL" is only a real check on a model that has
learned something. This one memorises 16 retain bios of the bundled demo suite (loss ~0.04)
in 200 AdamW steps on one thread (~15-25 s): Llama hidden 128 / intermediate 384 / 2 layers,
4 query and 2 key-value heads, untied head, the byte-level BPE tokenizer from gguf_helpers.
Calibration text is the suite's generic calibration.txt (never the memorised bios).

Measured (3 seeds): retain NLL rises over fp by ~0.0012-0.0025 for gptq4:g128 and by
~0.0021-0.0049 for rtn4:g128:nohead; mean |Δ log p| vs fp is ~0.6x RTN's for GPTQ.
"""

from __future__ import annotations

import atexit
import functools
import json
import random
import shutil
import tempfile
from pathlib import Path

import torch
from gguf_helpers import train_tokenizer

SUITE = Path(__file__).resolve().parents[2] / "probes" / "demo"
N_MEMORISED = 16


def _texts(split: str) -> list[str]:
    rows = [json.loads(line) for line in (SUITE / f"{split}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["text"] for row in rows if "text" in row]


def memorised_texts() -> list[str]:
    """The retain bios the model was trained on."""
    return _texts("retain")[:N_MEMORISED]


def calibration_texts() -> tuple[str, ...]:
    lines = (SUITE / "calibration.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line.strip())


@functools.cache
def memorised_llama(seed: int = 0, steps: int = 200) -> Path:
    """Train (once per session) and save the model; returns its checkpoint dir."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(tempfile.mkdtemp(prefix="auditq-quant-tests-")) / "memorised"
    atexit.register(shutil.rmtree, out.parent, True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tokenizer = train_tokenizer(400, bos=True)
            config = LlamaConfig(
                vocab_size=len(tokenizer), hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            model = LlamaForCausalLM(config)
            encoded = [tokenizer(text)["input_ids"] for text in memorised_texts()]
            optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1)
            rng = random.Random(seed)
            batch_size = 4
            for _ in range(steps):
                batch = rng.sample(encoded, batch_size)
                width = max(len(s) for s in batch)
                ids = torch.full((batch_size, width), tokenizer.pad_token_id)
                mask = torch.zeros((batch_size, width), dtype=torch.long)
                for row, seq in enumerate(batch):
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    finally:
        torch.set_num_threads(threads)
    return out


def token_logprobs(lm, tokenizer, texts) -> torch.Tensor:
    """All per-token log-probs of `texts` under a LanguageModel, concatenated (float64)."""
    import numpy as np

    scores = lm.score([tokenizer(t)["input_ids"] for t in texts])
    return torch.from_numpy(np.concatenate([s.logprobs for s in scores]))
