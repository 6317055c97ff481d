"""Train the demo's tiny Llama to memorise a probe suite.

Why this shape: hidden 128 / 4 layers / intermediate 384 / vocab 1024 is ~1.1M parameters,
small enough to memorise ~35 bios, ~26 prose chunks and ~170 QA pairs in about a minute on
one CPU thread, yet a real LlamaForCausalLM (RoPE, RMSNorm, SwiGLU) with grouped-query
attention (4 query heads, 2 KV heads) so exporters and quantizers see the layouts they meet
in real checkpoints. The head is untied so the lm_head is a separate nn.Linear that RTN and
GGUF quantize like any other matrix.

Bio sentences after the first are reshuffled in half of the epochs: otherwise a question
about a later fact can only be recalled by replaying the bio from its start.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class ModelConfig:
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 384
    vocab_size: int = 1024
    max_position_embeddings: int = 256


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 30
    weight_decay: float = 0.0
    shuffle_probability: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class TrainItem:
    """One training sequence; `sentences` set means its sentence order may be reshuffled."""

    text: str
    sentences: tuple[str, ...] | None = None

    def render(self, rng: random.Random, shuffle_probability: float) -> str:
        if not self.sentences or len(self.sentences) < 3 or rng.random() >= shuffle_probability:
            return self.text
        head, rest = self.sentences[0], list(self.sentences[1:])
        rng.shuffle(rest)
        return " ".join([head, *rest])


@dataclass(frozen=True)
class TrainResult:
    steps: int
    epochs: int
    tokens: int
    final_loss: float
    seconds: float


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> tuple[str, ...]:
    return tuple(s for s in _SENTENCE_END.split(text.strip()) if s)


def qa_text(question: str, answer: str, template: str) -> str:
    """How a QA pair is trained: the probe's prompt, then ' answer' and a newline."""
    return template.format(question=question) + " " + answer + "\n"


def suite_items(suite, splits: Sequence[str]) -> list[TrainItem]:
    """Training sequences of the given splits: text records (bios reshufflable) and QA pairs."""
    items: list[TrainItem] = []
    for name in splits:
        split = suite.split(name)
        for record in split.texts:
            sentences = split_sentences(record.text) if "-bio-" in record.id else None
            items.append(TrainItem(record.text, sentences))
        items.extend(TrainItem(qa_text(r.question, r.answer, suite.settings.qa_template)) for r in split.qa)
    return items


def split_texts(suite, name: str) -> list[str]:
    """A split's training strings in canonical form (texts, then formatted QA), e.g. for unlearning."""
    split = suite.split(name)
    return [r.text for r in split.texts] + [qa_text(r.question, r.answer, suite.settings.qa_template) for r in split.qa]


def new_model(config: ModelConfig, tokenizer, seed: int):
    """A freshly initialised LlamaForCausalLM (float32, untied head), seeded."""
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaConfig(
        **asdict(config),
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-5,
        attention_bias=False,
        mlp_bias=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama)
    model.to(torch.float32)
    return model


def encode(tokenizer, texts: Sequence[str], max_length: int = 256) -> list[list[int]]:
    """BOS + text + EOS token ids (the tokenizer's post-processor adds BOS)."""
    return [tokenizer(t).input_ids[: max_length - 1] + [tokenizer.eos_token_id] for t in texts]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def length_buckets(seqs: Sequence[list[int]], batch_size: int, rng: random.Random) -> list[list[list[int]]]:
    """Batches of similar length in random order: QA pairs (~16 tokens) padded to a bio's
    length (~100) would triple the work on a CPU."""
    keyed = sorted(seqs, key=lambda s: (len(s), rng.random()))
    batches = [keyed[b:b + batch_size] for b in range(0, len(keyed), batch_size)]
    rng.shuffle(batches)
    return batches


def lm_loss(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL over the non-padding tokens of a batch."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                                             ignore_index=-100)


def train_lm(model, tokenizer, items: Sequence[TrainItem], config: TrainConfig, log: LogFn | None = None) -> TrainResult:
    """AdamW with warmup + cosine decay; every epoch re-renders (reshuffles) bios and the batch order."""
    import time

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(items) / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.98))

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start, step, tokens, last = time.perf_counter(), 0, 0, float("nan")
    for epoch in range(config.epochs):
        seqs = encode(tokenizer, [item.render(rng, config.shuffle_probability) for item in items])
        running = 0.0
        for batch in length_buckets(seqs, config.batch_size, rng):
            ids, mask = pad_batch(batch, tokenizer.pad_token_id)
            loss = lm_loss(model, ids, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            tokens += int(mask.sum())
            running += float(loss.detach())
        last = running / steps_per_epoch
        if log is not None and (epoch + 1) % 10 == 0:
            log(f"  epoch {epoch + 1}/{config.epochs}  loss {last:.4f}")
    model.eval()
    return TrainResult(step, config.epochs, tokens, last, time.perf_counter() - start)


def save_model(model, tokenizer, out_dir: Path | str) -> None:
    """safetensors weights + config + tokenizer, the layout `auditq.checkpoint.load` accepts."""
    from transformers.utils import logging as hf_logging

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in the middle of the demo's log
    try:
        model.save_pretrained(str(out_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(out_dir))
    finally:
        if bars:
            hf_logging.enable_progress_bar()


@torch.no_grad()
def qa_exact_match(model, tokenizer, pairs: Sequence[tuple[str, str]], template: str, batch_size: int = 64) -> float:
    """Fraction of QA pairs whose greedy answer is exactly ' answer\\n'.

    Computed teacher-forced in one forward pass: greedy decoding reproduces the answer
    iff the argmax at every answer position (and at the newline) is the true token.
    Cheap enough to run every few unlearning steps as a stopping rule.
    """
    if not pairs:
        return float("nan")
    was_training = model.training
    model.eval()
    hits = 0
    for b in range(0, len(pairs), batch_size):
        chunk = pairs[b:b + batch_size]
        prompts = [tokenizer(template.format(question=q)).input_ids for q, _ in chunk]
        fulls = [tokenizer(qa_text(q, a, template)).input_ids for q, a in chunk]
        ids, mask = pad_batch(fulls, tokenizer.pad_token_id)
        pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
        for row, (prompt, full) in enumerate(zip(prompts, fulls)):
            start = 0  # where prompt and full encodings part (they agree unless BPE merged across the boundary)
            while start < min(len(prompt), len(full) - 1) and prompt[start] == full[start]:
                start += 1
            hits += bool((pred[row, start - 1:len(full) - 1] == ids[row, start:len(full)]).all())
    model.train(was_training)
    return hits / len(pairs)
