"""Per-architecture tables of the GGUF converter: which HF model types it converts, and how each tensor is named
and laid out in GGUF.

Adding an architecture starts here: its HF model_type → GGUF architecture in ARCHITECTURES, the gguf package's
MODEL_ARCH member in GGUF_MODEL_ARCH, and any row permutation or transpose in `tensor_transform`; then the
options llama.cpp computes differently (hparams.check_supported) and its hyperparameter keys
(metadata.write_hparams). The converter (tensors.gguf_tensors) and the weight-space evidence reader
(codes.hf_layout) both read these tables, so a file's tensors and their mapping back to HF never disagree.
"""

from __future__ import annotations

from typing import Any

from auditq.formats.gguf.dependency import require_gguf

#: HF model_type → GGUF architecture name
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gpt2": "gpt2"}

#: GGUF architecture name → member of gguf.MODEL_ARCH
GGUF_MODEL_ARCH = {"llama": "LLAMA", "qwen2": "QWEN2", "gpt2": "GPT2"}

#: HF state_dict entries that are buffers, not weights: never written
SKIPPED_SUFFIXES = (".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")

#: GPT-2's Conv1D weights, stored (in, out) by transformers and (out, in) by GGUF
_GPT2_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def tensor_name_map(info: Any):
    """gguf's HF → GGUF tensor name map for `info`'s architecture and depth."""
    gguf = require_gguf()
    arch = getattr(gguf.MODEL_ARCH, GGUF_MODEL_ARCH[info.arch])
    return gguf.get_tensor_name_map(arch, info.n_layer)


def tensor_transform(info: Any, hf_name: str) -> tuple[str, int]:
    """How the HF tensor `hf_name` is laid out in GGUF: ("rope", n_head) for the Llama q/k rows that
    convert_hf_to_gguf.py permutes (HF rotate-half → GGML interleaved RoPE), ("transpose", 0) for GPT-2's
    Conv1D weights, ("none", 0) otherwise."""
    if info.arch == "llama":
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            return "rope", info.n_head
        if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            return "rope", info.n_head_kv
    elif info.arch == "gpt2" and hf_name.endswith(_GPT2_CONV1D):
        return "transpose", 0
    return "none", 0
