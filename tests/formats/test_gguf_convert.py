"""HF → GGUF conversion, scored by llama.cpp: parity with torch, tokenizer parity, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

from gguf_helpers import PARITY_TEXTS, build_llama_checkpoint, load

from auditq.backends.base import LanguageModel  # noqa: E402
from auditq.backends.llamacpp_lm import LlamaCppLM, check_tokenizer_parity  # noqa: E402
from auditq.backends.torch_lm import TorchCausalLM  # noqa: E402
from auditq.errors import BackendUnavailable, MeasurementError  # noqa: E402
from auditq.formats import make_format  # noqa: E402
from auditq.formats.gguf import convert as convert_mod  # noqa: E402
from auditq.formats.gguf.convert import UnsupportedModel, convert_to_gguf  # noqa: E402

pytestmark = pytest.mark.gguf


def _torch_lm(ckpt) -> TorchCausalLM:
    return TorchCausalLM(ckpt.model, ckpt.pad_token_id, ckpt.eos_token_id, batch_size=4)


def _max_diffs(ckpt, lm: LanguageModel) -> tuple[float, float, float]:
    seqs = [ckpt.tokenizer(t)["input_ids"] for t in PARITY_TEXTS]
    ref, got = _torch_lm(ckpt).score(seqs), lm.score(seqs)
    assert [r.n_tokens for r in ref] == [g.n_tokens for g in got] == [len(s) - 1 for s in seqs]
    return (max(float(np.abs(r.logprobs - g.logprobs).max()) for r, g in zip(ref, got)),
            max(float(np.abs(r.mean_logp - g.mean_logp).max()) for r, g in zip(ref, got)),
            max(float(np.abs(r.std_logp - g.std_logp).max()) for r, g in zip(ref, got)))


def _greedy(ckpt, lm: LanguageModel, n: int = 24) -> tuple[list[list[int]], list[list[int]]]:
    prompts = [ckpt.tokenizer(t)["input_ids"][:8] for t in PARITY_TEXTS]
    return _torch_lm(ckpt).generate(prompts, n), lm.generate(prompts, n)


@pytest.mark.parametrize("fixture", ["gguf_llama", "gguf_qwen2"])
def test_f32_gguf_matches_torch(fixture, request, gguf_ctx):
    ckpt = request.getfixturevalue(fixture)
    before = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    fmt = make_format("gguf:f32")
    with fmt.apply(ckpt, gguf_ctx()) as lm:
        d_logp, d_mean, d_std = _max_diffs(ckpt, lm)
        torch_gen, gguf_gen = _greedy(ckpt, lm)
    assert d_logp < 1e-3, d_logp
    assert d_mean < 1e-3 and d_std < 1e-3, (d_mean, d_std)
    assert gguf_gen == torch_gen
    assert any(len(set(g)) > 1 for g in gguf_gen)  # continuations are not trivially constant
    # the checkpoint is only read
    after = ckpt.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    info = fmt.details()
    assert info["engine"] == "llama.cpp" and info["engine_version"]
    assert info["tensor_types"].keys() == {"F32"}
    assert info["tokenizer_parity_texts"] == len(PARITY_TEXTS)


def test_mistral_uses_the_llama_architecture(tmp_path, one_thread, gguf_ctx):
    ckpt = load(build_llama_checkpoint(tmp_path / "mistral", mistral=True, seed=5, heads=8, kv_heads=2))
    assert ckpt.config.model_type == "mistral"
    fmt = make_format("gguf:f32")
    with fmt.apply(ckpt, gguf_ctx()) as lm:
        d_logp, _, _ = _max_diffs(ckpt, lm)
        torch_gen, gguf_gen = _greedy(ckpt, lm)
    assert d_logp < 1e-3 and gguf_gen == torch_gen


def test_gpt2_converts_and_llama_cpp_gelu_is_documented(gguf_gpt2, gguf_ctx):
    fmt = make_format("gguf:f32")
    with fmt.apply(gguf_gpt2, gguf_ctx()) as lm:
        d_logp, _, _ = _max_diffs(gguf_gpt2, lm)
    # llama.cpp's GELU goes through an fp16 table: close, but not 1e-3 close
    assert d_logp < 2e-2, d_logp
    assert "GELU" in fmt.details()["note"]


def test_llama3_rope_scaling_writes_rope_freqs(tmp_path, one_thread, gguf_ctx):
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    ckpt = load(build_llama_checkpoint(tmp_path / "l3", rope_parameters=rope, tied=True, seed=3))
    fmt = make_format("gguf:f32")
    with fmt.apply(ckpt, gguf_ctx()) as lm:
        d_logp, _, _ = _max_diffs(ckpt, lm)
    assert d_logp < 1e-3, d_logp
    from auditq.formats.gguf.quantize import read_tensors

    conv = convert_to_gguf(ckpt.model, ckpt.tokenizer, ckpt.config, tmp_path / "l3.gguf")
    names = {t.name for t in read_tensors(conv.path)}
    assert "rope_freqs.weight" in names and "output.weight" not in names  # tied: llama.cpp reuses token_embd


def test_f32_conversion_is_cached_per_checkpoint(gguf_llama, gguf_ctx, monkeypatch):
    calls = []
    real = convert_mod.convert_to_gguf
    monkeypatch.setattr(convert_mod, "convert_to_gguf", lambda *a, **k: calls.append(1) or real(*a, **k))
    ctx = gguf_ctx()
    for spec in ("gguf:f32", "gguf:q8_0", "gguf:q4_0"):
        with make_format(spec).apply(gguf_llama, ctx) as lm:
            assert lm.score([gguf_llama.tokenizer("hello there")["input_ids"]])[0].n_tokens > 0
    assert len(calls) == 1


def test_tokenizer_parity_passes_and_names_the_mismatching_text(gguf_llama, gguf_qwen2, tmp_path):
    path = convert_to_gguf(gguf_llama.model, gguf_llama.tokenizer, gguf_llama.config, tmp_path / "l.gguf").path
    lm = LlamaCppLM(path, eos_token_id=gguf_llama.eos_token_id, n_threads=1)
    try:
        assert check_tokenizer_parity(lm, gguf_llama.tokenizer, PARITY_TEXTS) == len(PARITY_TEXTS)
        # a raw llama_cpp.Llama works too
        assert check_tokenizer_parity(lm.llama, gguf_llama.tokenizer, PARITY_TEXTS[:2]) == 2
        # the Qwen2 tokenizer (other merges, no BOS) must be caught, naming the first text
        with pytest.raises(MeasurementError, match="Hugging Face tokenizer") as err:
            check_tokenizer_parity(lm, gguf_qwen2.tokenizer, PARITY_TEXTS)
        assert repr(PARITY_TEXTS[0]) in str(err.value)
    finally:
        lm.close()


def test_context_grows_for_long_sequences(gguf_llama, gguf_ctx):
    text = " ".join(PARITY_TEXTS)
    ids = gguf_llama.tokenizer(text)["input_ids"]
    assert 256 < len(ids) <= 512
    with make_format("gguf:f32").apply(gguf_llama, gguf_ctx(gguf_n_ctx=64)) as lm:
        got = lm.score([ids])[0]
        assert lm.n_ctx >= len(ids)
        with pytest.raises(MeasurementError, match="exceeds the model's context"):
            lm.score([ids * 2])
    ref = _torch_lm(gguf_llama).score([ids])[0]
    assert float(np.abs(ref.logprobs - got.logprobs).max()) < 1e-3


def test_unsupported_architecture_is_backend_unavailable(gguf_ctx, gguf_llama):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=400, hidden_size=64, num_hidden_layers=1,
                                             num_attention_heads=4, intermediate_size=128))
    ckpt = type(gguf_llama)(path=gguf_llama.path, model=model, tokenizer=gguf_llama.tokenizer,
                            config=model.config, file_hashes={"x": "neox"})
    with pytest.raises(BackendUnavailable, match="gpt_neox"):
        with make_format("gguf:q4_0").apply(ckpt, gguf_ctx()):
            pass
    assert issubclass(UnsupportedModel, BackendUnavailable)


def test_unsupported_tokenizer_is_refused(gguf_llama, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    with pytest.raises(UnsupportedModel, match="byte-level BPE"):
        convert_to_gguf(gguf_llama.model, hf, gguf_llama.config, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
