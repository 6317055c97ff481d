"""Tiny random-init checkpoints of every architecture family the conformance matrix covers.

Each builder writes a real Hugging Face checkpoint directory (safetensors + tokenizer.json)
from a config: the smallest shapes the architecture allows while GPTQ/AWQ (groups of 128
along the input dimension) still run, i.e. hidden 128, intermediate 256, 2 layers, 4 query
heads of 32 (2 key/value heads where the family has grouped-query attention). K-quants need
input dimensions that are multiples of 256, so at these shapes llama.cpp falls back per tensor
(Q4_K -> Q5_0, Q6_K -> Q8_0 ...): the matrix records the types llama.cpp actually wrote.

Tokenizers are built here with the `tokenizers` library, in the two styles the field ships:

- byte-level BPE (GPT-2, Pythia, Phi-1.5, Llama-3, Qwen2/3, OLMo-2): `gguf_helpers.train_tokenizer`,
  plain ByteLevel or with the Llama-3 / Qwen2 split regex in front;
- SentencePiece style (Llama-2, Mistral-7B v0.1, Phi-3, Gemma-2): a SentencePiece BPE model with
  byte_fallback (`<0x00>`..`<0xFF>` byte pieces, "▁" for spaces) trained here with the
  `sentencepiece` library and shipped as tokenizer.model, plus the tokenizer.json transformers'
  LlamaConverter derives from it (BPE with byte_fallback, "▁" normalizer) -- what those models ship.

Weights are drawn wide (`_widen_init`) so next-token distributions are peaked: parity is a
real test. Every builder is deterministic in its seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

try:
    from .gguf_helpers import CORPUS, _widen_init, train_tokenizer
except ImportError:
    from gguf_helpers import CORPUS, _widen_init, train_tokenizer  # type: ignore

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS = 128, 256, 2, 4, 2


def spm_tokenizer(out: Path, vocab_size: int = 512, gemma: bool = False):
    """A SentencePiece BPE model with byte_fallback, trained here, saved as tokenizer.model next to the
    tokenizer.json transformers' own LlamaConverter derives from it -- the layout Llama-2, Mistral,
    Phi-3 and Gemma checkpoints ship. Llama order <unk>=0, <s>=1, </s>=2 with a dummy "▁" prefix;
    Gemma order <pad>=0, <eos>=1, <bos>=2, <unk>=3 without one. BOS is prepended, as both families do.
    """
    import io

    import sentencepiece as spm
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3) if gemma else dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(CORPUS) * 4), model_writer=buffer, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, add_dummy_prefix=not gemma, normalization_rule_name="identity",
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, split_digits=True, minloglevel=2, **ids)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(buffer.getvalue())
    processor = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    tok = _spm_to_tokenizers(processor, prefix=not gemma, unk=processor.id_to_piece(ids["unk_id"]))
    bos, eos, unk = (processor.id_to_piece(ids[k]) for k in ("bos_id", "eos_id", "unk_id"))
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, ids["bos_id"])])
    pad = processor.id_to_piece(0) if gemma else eos
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=pad)


def _spm_to_tokenizers(processor, prefix: bool, unk: str):
    """tokenizer.json of a SentencePiece BPE model, built the way transformers' LlamaConverter does (legacy:
    "▁" prepended and spaces replaced by a normalizer; merges ordered by piece score). transformers 5.24's
    SpmConverter.tokenizer passes its score list where extract() expects a model type, so it is rebuilt here."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers.convert_slow_tokenizer import generate_merges

    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    merges = generate_merges(vocab, {p: s for p, s in pieces})
    tok = Tokenizer(models.BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    steps = ([normalizers.Prepend("▁")] if prefix else []) + [normalizers.Replace(" ", "▁")]
    tok.normalizer = normalizers.Sequence(steps)
    dec = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    tok.decoder = decoders.Sequence(dec + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    controls = [processor.id_to_piece(i) for i in range(processor.get_piece_size())
                if processor.is_control(i) or processor.is_unknown(i)]
    tok.add_special_tokens([AddedToken(c, special=True, normalized=False) for c in controls])
    return tok


def _ids(tokenizer) -> dict:
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


def _attn(kv: bool = True) -> dict:
    return {"hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE, "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS, **({"num_key_value_heads": KV_HEADS} if kv else {}),
            "max_position_embeddings": 512}


def _llama2(tok_out: list, out: Path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = spm_tokenizer(out)
    tok_out.append(tok)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), rms_norm_eps=1e-5, tie_word_embeddings=False,
                                        **_attn(), **_ids(tok)))


def _llama3(tok_out: list, out: Path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _bytelevel(bos=True, regex=LLAMA3_PATTERN)
    tok_out.append(tok)
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), rms_norm_eps=1e-5, tie_word_embeddings=True,
                                        rope_parameters=rope, **_attn(), **_ids(tok)))


def _mistral(tok_out: list, out: Path):
    from transformers import MistralConfig, MistralForCausalLM

    tok = spm_tokenizer(out)
    tok_out.append(tok)
    return MistralForCausalLM(MistralConfig(vocab_size=len(tok), rms_norm_eps=1e-5, sliding_window=None,
                                            tie_word_embeddings=False, **_attn(), **_ids(tok)))


def _qwen2(tok_out: list, out: Path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = train_tokenizer(400, bos=False, qwen2_split=True)
    tok_out.append(tok)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), rms_norm_eps=1e-6, tie_word_embeddings=True,
                                        **_attn(), **_ids(tok)))


def _qwen3(tok_out: list, out: Path):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = train_tokenizer(400, bos=False, qwen2_split=True)
    tok_out.append(tok)
    return Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tok), rms_norm_eps=1e-6, tie_word_embeddings=True,
                                        head_dim=HIDDEN // HEADS, **_attn(), **_ids(tok)))


def _phi(tok_out: list, out: Path):
    from transformers import PhiConfig, PhiForCausalLM

    tok = _bytelevel(bos=False)
    tok_out.append(tok)
    # intermediate 4 x hidden: Phi-1.5/2's ratio, which llama.cpp's converter writes without reading the config
    return PhiForCausalLM(PhiConfig(vocab_size=len(tok), tie_word_embeddings=False,
                                    **{**_attn(kv=False), "intermediate_size": 4 * HIDDEN}, **_ids(tok)))


def _phi3(tok_out: list, out: Path):
    from transformers import Phi3Config, Phi3ForCausalLM

    tok = spm_tokenizer(out)
    tok_out.append(tok)
    return Phi3ForCausalLM(Phi3Config(vocab_size=len(tok), rms_norm_eps=1e-5, tie_word_embeddings=False,
                                      sliding_window=None, **_attn(), **_ids(tok)))


def _gemma2(tok_out: list, out: Path):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tok = spm_tokenizer(out, gemma=True)
    tok_out.append(tok)
    head_dim = HIDDEN // HEADS
    return Gemma2ForCausalLM(Gemma2Config(vocab_size=len(tok), head_dim=head_dim, query_pre_attn_scalar=head_dim,
                                          sliding_window=256, rms_norm_eps=1e-6, tie_word_embeddings=True,
                                          **_attn(), **_ids(tok)))


def _olmo2(tok_out: list, out: Path):
    from transformers import Olmo2Config, Olmo2ForCausalLM

    tok = _bytelevel(bos=False, regex=LLAMA3_PATTERN)
    tok_out.append(tok)
    return Olmo2ForCausalLM(Olmo2Config(vocab_size=len(tok), rms_norm_eps=1e-6, tie_word_embeddings=False,
                                        **_attn(), **_ids(tok)))


def _gpt_neox(tok_out: list, out: Path):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tok = _bytelevel(bos=False)
    tok_out.append(tok)
    return GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=len(tok), tie_word_embeddings=False,
                                            **_attn(kv=False), **_ids(tok)))


def _gpt2(tok_out: list, out: Path):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _bytelevel(bos=False)
    tok_out.append(tok)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                                      n_inner=INTERMEDIATE, n_positions=512, **_ids(tok)))


def _bytelevel(bos: bool, regex: str | None = None):
    """Byte-level BPE; with `regex` the Split(regex) + ByteLevel(use_regex=False) sequence of Llama-3/OLMo-2."""
    tok = train_tokenizer(400, bos=bos)
    if regex is None:
        return tok
    from tokenizers import Regex, pre_tokenizers

    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    return tok


@dataclass(frozen=True)
class Arch:
    """One row of the matrix: a name, the HF model_type, the tokenizer style and its builder."""

    name: str
    model_type: str
    tokenizer: str  # "spm" (byte_fallback BPE) or "bpe" (byte-level)
    build: Callable[[list, Path], object]
    seed: int


ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("llama2-spm", "llama", "spm", _llama2, 10),
    Arch("llama3-bpe", "llama", "bpe", _llama3, 11),
    Arch("mistral", "mistral", "spm", _mistral, 12),
    Arch("qwen2", "qwen2", "bpe", _qwen2, 13),
    Arch("qwen3", "qwen3", "bpe", _qwen3, 14),
    Arch("phi", "phi", "bpe", _phi, 15),
    Arch("phi3", "phi3", "spm", _phi3, 16),
    Arch("gemma2", "gemma2", "spm", _gemma2, 17),
    Arch("olmo2", "olmo2", "bpe", _olmo2, 18),
    Arch("gpt_neox", "gpt_neox", "bpe", _gpt_neox, 19),
    Arch("gpt2", "gpt2", "bpe", _gpt2, 20),
)}


def build_arch(name: str, out: Path) -> Path:
    """Write the `name` architecture's tiny checkpoint to `out` (deterministic in the arch's seed)."""
    import torch

    arch = ARCHS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(arch.seed)
        toks: list = []
        model = arch.build(toks, out)
        _widen_init(model, std=0.08, seed=arch.seed, head_std=0.15)
    model.save_pretrained(out, safe_serialization=True)
    toks[0].save_pretrained(out)
    return out
