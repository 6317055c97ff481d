"""Hugging Face checkpoint → GGUF (all tensors F32), written with the `gguf` package.

auditq converts the in-memory full-precision model itself instead of shelling out to
llama.cpp's convert_hf_to_gguf.py (which pip's llama-cpp-python does not ship). It follows
that script's conventions for the supported families:

- Llama family (``llama``, ``mistral`` → GGUF arch ``llama``): q_proj rows permuted with
  n_head and k_proj rows with n_kv_head (HF rotate-half RoPE → GGML's interleaved RoPE),
  grouped-query attention, optional q/k/v/o biases, tied or untied output, ``default``,
  ``linear`` and ``llama3`` RoPE (the latter writes ``rope_freqs.weight``).
- Qwen2 (``qwen2`` → ``qwen2``): q/k/v biases, NEOX RoPE (no permutation), tied output.
- GPT-2 (``gpt2`` → ``gpt2``): Conv1D weights transposed, learned position embeddings.
  llama.cpp evaluates GELU through an fp16 table, so F32 GPT-2 matches torch to ~4e-3
  in log-prob (Llama/Qwen2: ~3e-5).

Vocabulary: byte-level BPE only (tokenizer.ggml.model ``gpt2``); the pre-tokenizer is
recognised from the tokenizer's own JSON (plain ByteLevel → ``gpt-2``, the Llama-3 and
Qwen2 split regexes → ``llama-bpe`` / ``qwen2``). Token types: 3 (control) for special
tokens, 4 (user-defined) for other added tokens, 5 (unused) for padding rows, 1 otherwise.
BOS/EOS insertion is read off the tokenizer's behaviour, not its config files.

Everything else raises UnsupportedModel, a BackendUnavailable, so the pipeline reports the
row as UNKNOWN with the reason instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from auditq.errors import BackendUnavailable

INSTALL_HINT = "pip install 'auditq[gguf]'"

#: HF model_type → GGUF architecture name
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gpt2": "gpt2"}

# Split regexes of byte-level BPE pre-tokenizers that llama.cpp knows by name.
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
KNOWN_SPLIT_REGEXES = {_LLAMA3_REGEX: "llama-bpe", _QWEN2_REGEX: "qwen2"}


class UnsupportedModel(BackendUnavailable):
    """auditq cannot convert this checkpoint to GGUF (architecture, tokenizer or option)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def require_gguf():
    """Import the gguf package or raise BackendUnavailable with the install hint."""
    try:
        import gguf
    except ImportError:
        raise BackendUnavailable("the gguf formats need the 'gguf' package", install_hint=INSTALL_HINT) from None
    return gguf


def gguf_version() -> str:
    try:
        from importlib.metadata import version

        return version("gguf")
    except Exception:  # noqa: BLE001 - metadata is informational only
        return "unknown"


# --------------------------------------------------------------------------- config


def _cfg(config, *names, default=None):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def _rope(config) -> tuple[float, dict[str, Any]]:
    """(rope_theta, rope scaling dict) for transformers 4 (rope_theta/rope_scaling) and 5 (rope_parameters)."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and "full_attention" in params and isinstance(params["full_attention"], dict):
        params = params["full_attention"]
    scaling = dict(params) if isinstance(params, dict) else dict(getattr(config, "rope_scaling", None) or {})
    theta = scaling.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        theta = 10000.0
    kind = scaling.get("rope_type", scaling.get("type", "default")) or "default"
    scaling["rope_type"] = kind
    return float(theta), scaling


@dataclass(frozen=True)
class ModelInfo:
    model_type: str
    arch: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx_train: int
    n_vocab: int
    tied: bool


def model_info(model: torch.nn.Module, config) -> ModelInfo:
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedModel(
            f"GGUF conversion does not support model_type {model_type!r} "
            f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    n_embd = int(_cfg(config, "hidden_size", "n_embd"))
    n_head = int(_cfg(config, "num_attention_heads", "n_head"))
    n_head_kv = int(_cfg(config, "num_key_value_heads", default=n_head))
    head_dim = int(_cfg(config, "head_dim", default=n_embd // n_head))
    n_ff = int(_cfg(config, "intermediate_size", "n_inner", default=4 * n_embd))
    n_vocab = int(model.get_input_embeddings().weight.shape[0])
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    tied = out is None or inp.weight.data_ptr() == out.weight.data_ptr()
    return ModelInfo(
        model_type=model_type, arch=ARCHITECTURES[model_type],
        n_layer=int(_cfg(config, "num_hidden_layers", "n_layer")), n_embd=n_embd, n_ff=n_ff,
        n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim,
        n_ctx_train=int(_cfg(config, "max_position_embeddings", "n_positions", default=2048)),
        n_vocab=n_vocab, tied=tied,
    )


def _check_supported(info: ModelInfo, config) -> dict[str, Any]:
    """Refuse options llama.cpp would silently compute differently; return rope scaling info."""
    act = _cfg(config, "hidden_act", "activation_function", default="")
    if info.arch in ("llama", "qwen2") and act != "silu":
        raise UnsupportedModel(f"GGUF conversion: {info.model_type} with hidden_act {act!r} (llama.cpp uses SiLU)")
    if info.arch == "gpt2" and act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise UnsupportedModel(f"GGUF conversion: gpt2 with activation_function {act!r}")
    if info.arch == "gpt2":
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if getattr(config, flag, False):
                raise UnsupportedModel(f"GGUF conversion: gpt2 with {flag}=True is not what llama.cpp computes")
        return {}
    if getattr(config, "mlp_bias", False):
        raise UnsupportedModel(f"GGUF conversion: {info.model_type} with mlp_bias=True")
    if float(_cfg(config, "partial_rotary_factor", default=1.0)) != 1.0:
        raise UnsupportedModel(f"GGUF conversion: partial_rotary_factor != 1 in {info.model_type}")
    layer_types = getattr(config, "layer_types", None) or ()
    if info.arch == "qwen2" and (getattr(config, "use_sliding_window", False)
                                 or any(t != "full_attention" for t in layer_types)):
        raise UnsupportedModel("GGUF conversion: qwen2 with sliding-window layers")
    theta, scaling = _rope(config)
    kind = scaling["rope_type"]
    if kind not in ("default", "linear", "llama3"):
        raise UnsupportedModel(f"GGUF conversion: RoPE type {kind!r} is not supported by auditq's converter")
    if kind == "llama3" and info.arch != "llama":
        raise UnsupportedModel(f"GGUF conversion: llama3 RoPE on {info.model_type}")
    return {"theta": theta, **scaling}


# --------------------------------------------------------------------------- tensors


def permute_rope(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half row order → GGML interleaved RoPE order (as convert_hf_to_gguf.py's permute)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def llama3_rope_factors(theta: float, head_dim: int, scaling: dict[str, Any]) -> np.ndarray:
    """rope_freqs.weight for llama3 RoPE scaling (the same formula as convert_hf_to_gguf.py)."""
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def _as_f32(tensor: torch.Tensor) -> np.ndarray:
    # .numpy() shares memory with the model when it is already float32 on CPU; nothing writes to it
    return tensor.detach().to(device="cpu", dtype=torch.float32).numpy()


def gguf_tensors(model: torch.nn.Module, info: ModelInfo, rope: dict[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for every tensor of the model, in state_dict order."""
    gguf = require_gguf()
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2, "gpt2": gguf.MODEL_ARCH.GPT2}[info.arch]
    names = gguf.get_tensor_name_map(arch, info.n_layer)
    seen: set[str] = set()
    for hf_name, tensor in model.state_dict(keep_vars=False).items():
        if hf_name.endswith((".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")):
            continue
        if hf_name == "lm_head.weight" and info.tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedModel(f"GGUF conversion: no GGUF name for tensor {hf_name!r} of {info.model_type}")
        data = _as_f32(tensor)
        if info.arch == "llama":
            if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                data = permute_rope(data, info.n_head)
            elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                data = permute_rope(data, info.n_head_kv)
        elif info.arch == "gpt2" and data.ndim == 2 and hf_name.endswith(
                ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")):
            data = np.ascontiguousarray(data.T)  # Conv1D stores (in, out)
        if name in seen:
            raise UnsupportedModel(f"GGUF conversion: tensor {name!r} produced twice")
        seen.add(name)
        yield name, data
    if info.arch == "llama" and rope.get("rope_type") == "llama3":
        yield "rope_freqs.weight", llama3_rope_factors(rope["theta"], info.head_dim, rope)


# --------------------------------------------------------------------------- vocabulary


@dataclass
class GGUFVocab:
    pre: str
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    special_ids: dict[str, int]
    add_bos: bool
    add_eos: bool


def _pre_tokenizer_name(spec: dict[str, Any]) -> str:
    pre = spec.get("pre_tokenizer") or {}
    decoder = spec.get("decoder") or {}
    if (decoder.get("type") != "ByteLevel"
            and not any(d.get("type") == "ByteLevel" for d in decoder.get("decoders", []) or [])):
        raise UnsupportedModel("GGUF conversion: only byte-level BPE tokenizers are supported (decoder is not ByteLevel)")
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space", False):
            raise UnsupportedModel("GGUF conversion: ByteLevel pre-tokenizer with add_prefix_space=True")
        if not pre.get("use_regex", True):
            raise UnsupportedModel("GGUF conversion: ByteLevel pre-tokenizer without its regex")
        return "gpt-2"
    if pre.get("type") == "Sequence":
        parts = pre.get("pretokenizers", [])
        if (len(parts) == 2 and parts[0].get("type") == "Split" and parts[1].get("type") == "ByteLevel"
                and not parts[1].get("use_regex", True) and not parts[1].get("add_prefix_space", False)):
            regex = (parts[0].get("pattern") or {}).get("Regex")
            if regex in KNOWN_SPLIT_REGEXES:
                return KNOWN_SPLIT_REGEXES[regex]
    raise UnsupportedModel(
        "GGUF conversion: pre-tokenizer not recognised (known: plain ByteLevel, Llama-3 and Qwen2 split regexes)")


def _encode_merge(pair: Any) -> str:
    if isinstance(pair, str):
        return pair
    # tokenizers >= 0.20 stores [left, right]; llama.cpp wants "left right" with spaces shifted by 256
    return " ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair)


def _special_insertion(tokenizer) -> tuple[bool, bool]:
    """Whether the tokenizer prepends BOS / appends EOS, measured on a probe text."""
    plain = tokenizer("a b", add_special_tokens=False)["input_ids"]
    full = tokenizer("a b", add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(full) > len(plain) and full[0] == bos and (not plain or plain[0] != bos)
    add_eos = eos is not None and len(full) > len(plain) and full[-1] == eos and (not plain or plain[-1] != eos)
    if len(full) - len(plain) != int(add_bos) + int(add_eos):
        raise UnsupportedModel("GGUF conversion: the tokenizer adds special tokens other than BOS/EOS")
    return add_bos, add_eos


def build_vocab(tokenizer, n_vocab: int) -> GGUFVocab:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UnsupportedModel("GGUF conversion: needs a fast (tokenizers) tokenizer")
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback", False):
        raise UnsupportedModel(
            f"GGUF conversion: only byte-level BPE vocabularies are supported (got {model.get('type')!r}"
            + (" with byte_fallback, i.e. SentencePiece-style" if model.get("byte_fallback") else "") + ")")
    if spec.get("normalizer") not in (None, {"type": "NFC"}):
        raise UnsupportedModel("GGUF conversion: tokenizer has a normalizer llama.cpp does not apply")
    pre = _pre_tokenizer_name(spec)
    vocab = tokenizer.get_vocab()
    if len(vocab) > n_vocab:
        raise UnsupportedModel(f"GGUF conversion: tokenizer has {len(vocab)} tokens but the embedding only {n_vocab} rows")
    by_id = {i: t for t, i in vocab.items()}
    added = {int(i): tok for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    special_ids = set(getattr(tokenizer, "all_special_ids", []))
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(5)  # UNUSED
            continue
        tokens.append(by_id[i])
        if i in special_ids or (i in added and getattr(added[i], "special", False)):
            types.append(3)  # CONTROL
        elif i in added:
            types.append(4)  # USER_DEFINED
        else:
            types.append(1)  # NORMAL
    merges = [_encode_merge(m) for m in model.get("merges", [])]
    ids = {}
    for kind in ("bos", "eos", "unk", "pad"):
        value = getattr(tokenizer, f"{kind}_token_id", None)
        if value is not None:
            ids[kind] = int(value)
    add_bos, add_eos = _special_insertion(tokenizer)
    return GGUFVocab(pre=pre, tokens=tokens, token_types=types, merges=merges, special_ids=ids,
                     add_bos=add_bos, add_eos=add_eos)


# --------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class ConversionResult:
    path: Path
    arch: str
    n_tensors: int
    notes: tuple[str, ...] = ()


def convert_to_gguf(model: torch.nn.Module, tokenizer, config, out_path: Path | str,
                    name: str = "auditq") -> ConversionResult:
    """Write `model` (unchanged) and its tokenizer as an all-F32 GGUF file at `out_path`.

    The file is written to a temporary name and renamed, so a crash never leaves a
    half-written file that a later run would take for a finished conversion.
    """
    gguf = require_gguf()
    out_path = Path(out_path)
    info = model_info(model, config)
    rope = _check_supported(info, config)
    vocab = build_vocab(tokenizer, info.n_vocab)
    notes: list[str] = []
    window = getattr(config, "sliding_window", None)
    if info.model_type == "mistral" and window:
        notes.append(f"Mistral sliding window {window} is not applied by llama.cpp's llama architecture; "
                     f"identical only for sequences of at most {window} tokens")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), info.arch)
    try:
        writer.add_name(name)
        writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
        writer.add_context_length(info.n_ctx_train)
        writer.add_embedding_length(info.n_embd)
        writer.add_block_count(info.n_layer)
        writer.add_feed_forward_length(info.n_ff)
        writer.add_head_count(info.n_head)
        writer.add_vocab_size(info.n_vocab)
        if info.arch == "gpt2":
            writer.add_layer_norm_eps(float(_cfg(config, "layer_norm_epsilon", default=1e-5)))
        else:
            writer.add_head_count_kv(info.n_head_kv)
            writer.add_layer_norm_rms_eps(float(_cfg(config, "rms_norm_eps", default=1e-6)))
            writer.add_rope_freq_base(rope["theta"])
            writer.add_rope_dimension_count(info.head_dim)
            if info.head_dim * info.n_head != info.n_embd:
                writer.add_key_length(info.head_dim)
                writer.add_value_length(info.head_dim)
            if rope["rope_type"] == "linear":
                writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
                writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(vocab.pre)
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.token_types)
        writer.add_token_merges(vocab.merges)
        for kind, tid in vocab.special_ids.items():
            getattr(writer, f"add_{kind}_token_id")(tid)
        writer.add_add_bos_token(vocab.add_bos)
        writer.add_add_eos_token(vocab.add_eos)
        n_tensors = 0
        for tname, data in gguf_tensors(model, info, rope):
            writer.add_tensor(tname, data)
            n_tensors += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp, out_path)
    return ConversionResult(path=out_path, arch=info.arch, n_tensors=n_tensors, notes=tuple(notes))


def checkpoint_key(checkpoint) -> str:
    """A stable key for a checkpoint: its file fingerprints, else a hash of its weights."""
    hashes = getattr(checkpoint, "file_hashes", None)
    digest = hashlib.sha256()
    if hashes:
        digest.update(json.dumps(sorted(hashes.items())).encode())
    else:
        for name, tensor in checkpoint.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


_F32_CACHE: dict[tuple[str, str], ConversionResult] = {}


def cached_f32_conversion(checkpoint, workdir: Path) -> ConversionResult:
    """Convert once per checkpoint and workdir; every gguf:* format of a run quantizes from this file."""
    key = checkpoint_key(checkpoint)
    path = Path(workdir) / "gguf" / key / "model-f32.gguf"
    cache_key = (str(path.resolve()), key)
    hit = _F32_CACHE.get(cache_key)
    if hit is not None and hit.path.is_file():
        return hit
    result = convert_to_gguf(checkpoint.model, checkpoint.tokenizer, checkpoint.config, path,
                             name=Path(str(checkpoint.path)).name or "auditq")
    _F32_CACHE[cache_key] = result
    return result
