"""TorchCausalLM at real-model scale rules, checked on the tiny memorising model:

- chunked scoring (a few positions at a time through the LM head) equals one full-vocabulary pass,
  and both equal log_softmax of the model's own logits computed independently here;
- token-budget batching (longest first) gives every sample the same outputs as fixed batches, in input order;
- the KV-cache greedy loop gives exactly what transformers' generate gave (the old path), and stops a row
  right after a stop token.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditq.backends.batching import plan_batches
from auditq.backends.torch_lm import TorchCausalLM, plain_head
from auditq.probes.text import encode_sequences, newline_token_ids


def _lm(tiny, **kwargs) -> TorchCausalLM:
    return TorchCausalLM(tiny.model, tiny.tokenizer.pad_token_id, tiny.tokenizer.eos_token_id, **kwargs)


def _sequences(tiny) -> list[list[int]]:
    texts = list(tiny.memorised) + list(tiny.unseen) + ["Question: Who built the glass tower?\nAnswer: Mira"]
    return encode_sequences(tiny.tokenizer, texts)


def _reference(tiny, seq: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent formula: one unpadded sequence, model(...).logits, full log_softmax in float64."""
    with torch.no_grad():
        logits = tiny.model(input_ids=torch.tensor([seq])).logits[0, :-1].double()
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    mean = (p * logp).sum(-1)
    std = ((p * (logp - mean[:, None]) ** 2).sum(-1)).sqrt()
    token = logp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])]
    return token.numpy(), mean.numpy(), std.numpy()


def test_tiny_model_uses_the_chunked_head_path(tiny):
    assert plain_head(tiny.model) is tiny.model.lm_head


def test_chunked_scores_equal_unchunked_and_the_reference(tiny):
    seqs = _sequences(tiny)
    one_position = _lm(tiny, chunk_elements=1).score(seqs)           # one position per chunk
    whole = _lm(tiny, chunk_elements=1 << 30).score(seqs)            # the whole batch at once
    for seq, a, b in zip(seqs, one_position, whole):
        ref = _reference(tiny, seq)
        for got_a, got_b, want in zip((a.logprobs, a.mean_logp, a.std_logp), (b.logprobs, b.mean_logp, b.std_logp), ref):
            assert got_a.shape == want.shape
            np.testing.assert_allclose(got_a, got_b, atol=1e-5, rtol=0)
            np.testing.assert_allclose(got_a, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 30])
def test_the_model_logits_path_equals_the_reference(tiny, monkeypatch, chunk):
    """Architectures without a plain head score the model's own logits: same values, any chunk size."""
    import auditq.backends.torch_lm as torch_lm

    monkeypatch.setattr(torch_lm, "plain_head", lambda model: None)
    seqs = _sequences(tiny)
    for seq, got in zip(seqs, _lm(tiny, chunk_elements=chunk * len(tiny.tokenizer)).score(seqs)):
        for value, want in zip((got.logprobs, got.mean_logp, got.std_logp), _reference(tiny, seq)):
            np.testing.assert_allclose(value, want, atol=1e-4, rtol=0)


def test_logprob_only_scoring_matches_full_scoring(tiny):
    seqs = _sequences(tiny)
    full, light = _lm(tiny).score(seqs), _lm(tiny).score_logprobs(seqs)
    for a, b in zip(full, light):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-6)
        assert np.isnan(b.mean_logp).all() and b.n_tokens == a.n_tokens


def test_plan_batches_respects_budget_and_covers_every_index():
    lengths = [5, 40, 12, 40, 3, 9, 100, 1]
    batches = plan_batches(lengths, max_rows=3, max_tokens=80)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        width = max(lengths[i] for i in batch)
        assert len(batch) * width <= 80 or len(batch) == 1   # an over-long sequence gets a batch of its own
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    assert [6] in batches


@pytest.mark.parametrize("budget", [16, 64, 1000])
def test_token_budget_batching_gives_the_same_per_sample_outputs(tiny, budget):
    seqs = _sequences(tiny)
    fixed = _lm(tiny, batch_size=1).score(seqs)
    budgeted = _lm(tiny, batch_size=16, max_batch_tokens=budget).score(seqs)
    for seq, a, b in zip(seqs, fixed, budgeted):
        assert b.n_tokens == len(seq) - 1  # in input order
        for x, y in zip((a.logprobs, a.mean_logp, a.std_logp), (b.logprobs, b.mean_logp, b.std_logp)):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)
    prompts = [s[: max(2, len(s) // 2)] for s in seqs]
    assert _lm(tiny, batch_size=1).generate(prompts, 12) == \
        _lm(tiny, batch_size=16, max_batch_tokens=budget).generate(prompts, 12)


def _old_generate(tiny, prompts, max_new_tokens, batch_size):
    """The previous implementation: transformers' generate, left padding, cut at EOS."""
    model, pad, eos = tiny.model, tiny.tokenizer.pad_token_id, tiny.tokenizer.eos_token_id
    results = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        with torch.no_grad():
            generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                       do_sample=False, num_beams=1, use_cache=True, pad_token_id=pad,
                                       eos_token_id=eos)
        for row in range(len(batch)):
            new = generated[row, width:].tolist()
            if eos in new:
                new = new[: new.index(eos)]
            while new and new[-1] == pad:
                new.pop()
            results.append(new)
    return results


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_kv_cache_greedy_equals_transformers_generate(tiny, batch_size):
    seqs = _sequences(tiny)
    prompts = [s[: max(2, len(s) // 3)] for s in seqs]
    want = _old_generate(tiny, prompts, 24, batch_size)
    assert _lm(tiny, batch_size=batch_size).generate(prompts, 24) == want
    assert any(len(w) > 5 for w in want)


def test_generation_stops_a_row_right_after_a_stop_token(tiny):
    prompt = encode_sequences(tiny.tokenizer, ["Question: Who built the glass tower?\nAnswer:"])
    other = _sequences(tiny)[:2]
    prompts = prompt + [s[:6] for s in other]
    stops = newline_token_ids(tiny.tokenizer)
    full = _lm(tiny).generate(prompts, 20)
    cut = _lm(tiny).generate(prompts, 20, stop_token_ids=stops)
    assert any(t in stops for t in full[0])  # the QA document goes on to the next "Question:"
    for a, b in zip(full, cut):
        first = next((i for i, t in enumerate(a) if t in stops), None)
        assert b == (a if first is None else a[: first + 1])
    assert tiny.tokenizer.decode(cut[0]).strip() == tiny.qa_answer
