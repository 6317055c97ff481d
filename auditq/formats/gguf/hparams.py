"""What the GGUF converter reads off a Hugging Face config: the model's shape (ModelInfo), its RoPE settings, and
the options llama.cpp would compute differently, which it refuses (UnsupportedModel) instead of converting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from auditq.formats.gguf.architectures import ARCHITECTURES
from auditq.formats.gguf.dependency import UnsupportedModel


def cfg_value(config, *names, default=None):
    """The first of `names` the config sets (not None): HF families spell one setting differently."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def rope_config(config) -> tuple[float, dict[str, Any]]:
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
    n_embd = int(cfg_value(config, "hidden_size", "n_embd"))
    n_head = int(cfg_value(config, "num_attention_heads", "n_head"))
    n_head_kv = int(cfg_value(config, "num_key_value_heads", default=n_head))
    head_dim = int(cfg_value(config, "head_dim", default=n_embd // n_head))
    n_ff = int(cfg_value(config, "intermediate_size", "n_inner", default=4 * n_embd))
    n_vocab = int(model.get_input_embeddings().weight.shape[0])
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    tied = out is None or inp.weight.data_ptr() == out.weight.data_ptr()
    return ModelInfo(
        model_type=model_type, arch=ARCHITECTURES[model_type],
        n_layer=int(cfg_value(config, "num_hidden_layers", "n_layer")), n_embd=n_embd, n_ff=n_ff,
        n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim,
        n_ctx_train=int(cfg_value(config, "max_position_embeddings", "n_positions", default=2048)),
        n_vocab=n_vocab, tied=tied,
    )


def _check_activation(info: ModelInfo, config) -> None:
    act = cfg_value(config, "hidden_act", "activation_function", default="")
    if info.arch in ("llama", "qwen2") and act != "silu":
        raise UnsupportedModel(f"GGUF conversion: {info.model_type} with hidden_act {act!r} (llama.cpp uses SiLU)")
    if info.arch == "gpt2" and act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise UnsupportedModel(f"GGUF conversion: gpt2 with activation_function {act!r}")


def check_supported(info: ModelInfo, config) -> dict[str, Any]:
    """Refuse options llama.cpp would silently compute differently; return rope scaling info."""
    _check_activation(info, config)
    if info.arch == "gpt2":
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if getattr(config, flag, False):
                raise UnsupportedModel(f"GGUF conversion: gpt2 with {flag}=True is not what llama.cpp computes")
        return {}
    if getattr(config, "mlp_bias", False):
        raise UnsupportedModel(f"GGUF conversion: {info.model_type} with mlp_bias=True")
    if float(cfg_value(config, "partial_rotary_factor", default=1.0)) != 1.0:
        raise UnsupportedModel(f"GGUF conversion: partial_rotary_factor != 1 in {info.model_type}")
    layer_types = getattr(config, "layer_types", None) or ()
    if info.arch == "qwen2" and (getattr(config, "use_sliding_window", False)
                                 or any(t != "full_attention" for t in layer_types)):
        raise UnsupportedModel("GGUF conversion: qwen2 with sliding-window layers")
    theta, scaling = rope_config(config)
    kind = scaling["rope_type"]
    if kind not in ("default", "linear", "llama3"):
        raise UnsupportedModel(f"GGUF conversion: RoPE type {kind!r} is not supported by auditq's converter")
    if kind == "llama3" and info.arch != "llama":
        raise UnsupportedModel(f"GGUF conversion: llama3 RoPE on {info.model_type}")
    return {"theta": theta, **scaling}
