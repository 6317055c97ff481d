"""LanguageModel over a Hugging Face transformers causal LM in torch, safe at real vocabulary sizes.

Scoring never holds several (batch × length × vocab) float tensors: for plain architectures the
decoder's hidden states are projected through the LM head a chunk of positions at a time, and
log p, the mean and the std of log p over the vocabulary (Min-K%++) are reduced per chunk, so
working memory is O(batch × chunk × vocab). Batches are planned by a token budget, longest
sequences first (auditq.backends.batching). Generation is batched greedy decoding with the KV
cache that stops a row at EOS or at a probe's stop tokens, and the batch once every row stopped.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from auditq.backends.base import LanguageModel, TokenScores
from auditq.backends.batching import run_batched

#: float elements of one (positions × vocab) chunk of logits (16 MiB in float32: ~131 positions at a 32k
#: vocabulary, ~27 at 152k). Two such buffers per batch, allocated once (see _reduce_positions); fewer
#: positions per chunk make the LM head's matrix product read its weights more often (on the 0.5B shape
#: 2^22 scored the MIA texts in 151 s against 165 s at 2^21).
SCORE_CHUNK_ELEMENTS = 1 << 22
#: architectures whose logits are exactly lm_head(base_model(...).last_hidden_state)
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "gpt_neox", "gpt2", "olmo", "olmo2",
                              "smollm3"})
#: config fields that mean the logits are transformed after the LM head
_HEAD_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def unwrapped(model):
    """The transformers model inside a peft wrapper (LoRA layers stay injected in it), else the model itself."""
    return model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model


def plain_head(model) -> torch.nn.Module | None:
    """The LM head when logits = head(base_model hidden states) for this architecture, else None."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_TYPES:
        return None
    if any(getattr(config, name, None) not in (None, False, 1, 1.0) for name in _HEAD_TRANSFORMS):
        return None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    body = getattr(model, "base_model", None)
    if head is None or body is None or body is model:
        return None
    return head


def input_device(model) -> torch.device:
    """Where input ids go: the input embedding's device (with a device map, the first GPU)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embeddings is not None and getattr(embeddings, "weight", None) is not None:
        return embeddings.weight.device
    return next(model.parameters()).device


def reduce_chunk(logits: torch.Tensor, scratch: torch.Tensor, targets: torch.Tensor, out: tuple,
                 with_distribution: bool) -> None:
    """log p(target), and the mean and std of log p over the vocabulary, of one chunk of positions.

    `logits` (positions × vocab, float32) is overwritten and `scratch` (the same shape) reused:
    nothing vocabulary-sized is allocated here, and the three results are written into slices
    of the batch's preallocated outputs `out` (token_logp, mean, std). With s = logits - max,
    Z = Σ exp(s): log p = s - log Z; the mean of log p under p is E[s] - log Z and its variance
    is E[s²] - E[s]² (log p and s differ by a constant), with E taken under p = exp(s) / Z.
    """
    token_out, mean_out, std_out = out
    logits.sub_(logits.amax(-1, keepdim=True))
    torch.exp(logits, out=scratch)
    total = scratch.sum(-1)
    log_z = total.log()
    token_out.copy_(logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z)
    if not with_distribution:
        return
    scratch.mul_(logits)
    first = scratch.sum(-1).div_(total)
    scratch.mul_(logits)
    second = scratch.sum(-1).div_(total)
    mean_out.copy_(first - log_z)
    std_out.copy_((second - first.square()).clamp_min(0).sqrt())


def _head_into(head: torch.nn.Module, states: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """The head's logits for `states`, written into `buffer` (float32): a plain float32 Linear
    multiplies straight into it, any other head (bf16, LoRA-wrapped, with a bias) is copied in."""
    if type(head) is torch.nn.Linear and head.bias is None and head.weight.dtype == torch.float32 \
            and states.dtype == torch.float32:
        return torch.matmul(states, head.weight.t(), out=buffer)
    return buffer.copy_(head(states))


class TorchCausalLM(LanguageModel):
    """Batched scoring (right padding) and batched greedy generation (left padding, KV cache)."""

    def __init__(self, model, pad_token_id: int, eos_token_id: int | None, batch_size: int = 16,
                 description: str = "torch", max_batch_tokens: int | None = None,
                 chunk_elements: int = SCORE_CHUNK_ELEMENTS) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.chunk_elements = chunk_elements
        self.description = description

    @property
    def device(self) -> torch.device:
        return input_device(self.model)

    # ------------------------------------------------------------------ scoring

    def score(self, sequences: list[list[int]]) -> list[TokenScores]:
        return run_batched(sequences, self.batch_size, self.max_batch_tokens,
                           lambda b: _trimmed(self._score_batch(b, True)))

    def score_logprobs(self, sequences: list[list[int]]) -> list[TokenScores]:
        return run_batched(sequences, self.batch_size, self.max_batch_tokens,
                           lambda b: _trimmed(self._score_batch(b, False)))

    @torch.inference_mode()
    def _score_batch(self, batch: list[list[int]], with_distribution: bool) -> list[TokenScores]:
        width = max(len(s) for s in batch)
        if width < 2:  # nothing to predict (a lone BOS): empty scores, as the llama.cpp backend returns
            return [TokenScores(np.zeros(0), np.zeros(0), np.zeros(0)) for _ in batch]
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        device = self.device
        core = unwrapped(self.model)
        head = plain_head(core)
        counts = [max(0, len(seq) - 1) for seq in batch]
        if head is not None:
            hidden = core.base_model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            # only positions that predict a real token go through the head (no padding), a chunk at a time
            valid = mask[:, 1:].bool()
            states = hidden[:, :-1][valid.to(hidden.device)]
            del hidden
            targets = ids[:, 1:][valid].to(head.weight.device)
            flat = self._reduce_positions(states.shape[0], head.weight.shape[0], head.weight.device,
                                          lambda a, b, buffer: _head_into(head, states[a:b].to(head.weight.device),
                                                                          buffer),
                                          targets, with_distribution)
            del states
            rows = [tuple(t.split(counts) if t is not None else [None] * len(batch)) for t in flat]
            per_row = list(zip(*rows))
        else:
            full_logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            vocab = full_logits.shape[-1]
            flat_logits = full_logits.reshape(-1, vocab)  # a view: every position, the last of each row unused
            shifted = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)  # the last column only pads the shape
            targets = shifted.reshape(-1).to(full_logits.device)
            flat = self._reduce_positions(flat_logits.shape[0], vocab, full_logits.device,
                                          lambda a, b, buffer: buffer.copy_(flat_logits[a:b]),
                                          targets, with_distribution)
            del full_logits, flat_logits
            stacked = [t.reshape(len(batch), width) if t is not None else None for t in flat]
            per_row = [tuple(t[row, :n] if t is not None else None for t in stacked) for row, n in enumerate(counts)]
        out = []
        for (logp, mean, std), n in zip(per_row, counts):
            nan = np.full(n, np.nan)
            out.append(TokenScores(
                logprobs=logp.double().cpu().numpy(),
                mean_logp=mean.double().cpu().numpy() if mean is not None else nan,
                std_logp=std.double().cpu().numpy() if std is not None else nan.copy(),
            ))
        return out

    def _reduce_positions(self, n_positions: int, vocab: int, device, fill, targets: torch.Tensor,
                          with_distribution: bool) -> list[torch.Tensor | None]:
        """Per-position (log p, mean, std) of `n_positions` positions, a chunk of positions at a time.

        `fill(start, stop, buffer)` writes those positions' logits into `buffer`. The two
        vocabulary-sized buffers and the outputs are allocated once per batch: allocating them
        per chunk, with the small per-chunk results in between, fragmented glibc's heap (one MIA
        pass on the 0.5B shape jumped from 2.9 to 4.45 GiB).
        """
        chunk = max(1, min(n_positions, self.chunk_elements // max(1, vocab)))
        buffer = torch.empty((chunk, vocab), dtype=torch.float32, device=device)
        scratch = torch.empty_like(buffer)
        outputs = [torch.empty(n_positions, dtype=torch.float32, device=device) for _ in range(3)]
        for start in range(0, n_positions, chunk):
            stop = min(n_positions, start + chunk)
            logits = fill(start, stop, buffer[:stop - start])
            reduce_chunk(logits, scratch[:stop - start], targets[start:stop],
                         tuple(o[start:stop] for o in outputs), with_distribution)
        del buffer, scratch
        return [outputs[0]] + (outputs[1:] if with_distribution else [None, None])

    # ------------------------------------------------------------------ generation

    def generate(self, prompts: list[list[int]], max_new_tokens: int,
                 stop_token_ids: Iterable[int] = ()) -> list[list[int]]:
        stops = frozenset(int(t) for t in stop_token_ids)
        # a row's final width (prompt + new tokens) is what the KV cache holds
        return run_batched(prompts, self.batch_size, self.max_batch_tokens,
                           lambda b: _trimmed(self._generate_batch(b, max_new_tokens, stops)),
                           lengths=[len(p) + max_new_tokens for p in prompts])

    @torch.inference_mode()
    def _generate_batch(self, batch: list[list[int]], max_new_tokens: int, stops: frozenset[int]) -> list[list[int]]:
        device = self.device
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        # the prefill needs the last position's logits only (not batch × width × vocab)
        keep = {"logits_to_keep": 1} if _accepts(self.model, "logits_to_keep") else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep)
        past = out.past_key_values
        next_ids = out.logits[:, -1].float().argmax(-1)
        del out
        cache_arg = "cache" if _accepts(self.model, "cache") else "past_key_values"  # renamed in transformers 5.2x
        results: list[list[int]] = [[] for _ in batch]
        done = [False] * len(batch)
        last_position = positions[:, -1:]
        for step in range(max_new_tokens):
            for row, token in enumerate(next_ids.tolist()):
                if done[row]:
                    continue
                if self.eos_token_id is not None and token == self.eos_token_id:
                    done[row] = True
                    continue
                results[row].append(token)
                if token in stops or len(results[row]) >= max_new_tokens:
                    done[row] = True
            if all(done) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones((len(batch), 1))], dim=-1)
            last_position = last_position + 1
            feed = next_ids.to(device).unsqueeze(-1)
            out = self.model(input_ids=feed, attention_mask=mask, position_ids=last_position,
                             use_cache=True, **{cache_arg: past})
            past = out.past_key_values
            next_ids = out.logits[:, -1].float().argmax(-1)
            del out
        del past
        for new in results:  # as before: no trailing padding (models whose pad differs from EOS)
            while new and new[-1] == self.pad_token_id and self.pad_token_id != self.eos_token_id:
                new.pop()
        return results


def _accepts(model, name: str) -> bool:
    """Whether the model's forward takes keyword `name` (it differs across transformers versions)."""
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _trimmed(results: list) -> list:
    """A batch's results, after its freed scratch went back to the OS (auditq.checkpoint.memory).

    glibc reuses freed vocabulary-sized chunks badly once small long-lived results sit between
    them: without this the heap grew batch after batch (a standalone MIA pass on the 57M shape
    went from 0.74 to 1.75 GiB). One trim per batch costs nothing next to the batch.
    """
    from auditq.checkpoint.memory import release_free_memory

    release_free_memory()
    return results
