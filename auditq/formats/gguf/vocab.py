"""The tokenizer as GGUF stores it: byte-level BPE only (tokenizer.ggml.model ``gpt2``).

The pre-tokenizer is recognised from the tokenizer's own JSON (plain ByteLevel → ``gpt-2``, the Llama-3 and
Qwen2 split regexes → ``llama-bpe`` / ``qwen2``). Token types: 3 (control) for special tokens, 4 (user-defined)
for other added tokens, 5 (unused) for padding rows, 1 otherwise. BOS/EOS insertion is read off the tokenizer's
behaviour, not its config files. Anything else is refused (UnsupportedModel): llama.cpp would tokenize the
probes differently from the checkpoint's tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from auditq.formats.gguf.dependency import UnsupportedModel

# Split regexes of byte-level BPE pre-tokenizers that llama.cpp knows by name.
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
KNOWN_SPLIT_REGEXES = {_LLAMA3_REGEX: "llama-bpe", _QWEN2_REGEX: "qwen2"}


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


def _bpe_spec(tokenizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tokenizer JSON, its BPE model) of a fast byte-level BPE tokenizer; anything else is refused."""
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
    return spec, model


def _tokens_and_types(tokenizer, vocab: dict[str, int], n_vocab: int) -> tuple[list[str], list[int]]:
    """One token and one GGUF token type per embedding row; rows with no token are padding (UNUSED)."""
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
    return tokens, types


def build_vocab(tokenizer, n_vocab: int) -> GGUFVocab:
    spec, model = _bpe_spec(tokenizer)
    pre = _pre_tokenizer_name(spec)
    vocab = tokenizer.get_vocab()
    if len(vocab) > n_vocab:
        raise UnsupportedModel(f"GGUF conversion: tokenizer has {len(vocab)} tokens but the embedding only {n_vocab} rows")
    tokens, types = _tokens_and_types(tokenizer, vocab, n_vocab)
    merges = [_encode_merge(m) for m in model.get("merges", [])]
    ids = {}
    for kind in ("bos", "eos", "unk", "pad"):
        value = getattr(tokenizer, f"{kind}_token_id", None)
        if value is not None:
            ids[kind] = int(value)
    add_bos, add_eos = _special_insertion(tokenizer)
    return GGUFVocab(pre=pre, tokens=tokens, token_types=types, merges=merges, special_ids=ids,
                     add_bos=add_bos, add_eos=add_eos)
