"""Light checks of a checkpoint directory: files, config.json types, tokenizer.json, safetensors headers
against config.json's shapes — all without torch or transformers, so a refusal takes well under 2 s."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from auditq.checkpoint.files import PICKLE_GLOBS
from auditq.checkpoint.safetensors_header import TensorEntry, read_checkpoint_headers
from auditq.errors import InputError
from auditq.safe_parse import loads_json

#: config fields that must be positive integers when present (HF names and GPT-2's)
INT_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "vocab_size", "max_position_embeddings", "head_dim", "n_embd", "n_layer", "n_head", "n_positions",
              "n_inner")
ARCH_FIELDS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "vocab_size")
_LAYER = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")
#: JSON files beside the weights that transformers parses with plain json.load: parsed here with the guard first
SIDE_JSON = ("tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "added_tokens.json")


def read_config(path: Path, role: str) -> dict[str, Any]:
    """config.json of a checkpoint dir, type-checked (InputError naming the field, value and expectation)."""
    file = path / "config.json"
    try:
        data = loads_json(file.read_text(encoding="utf-8"), file)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{role} checkpoint {file} is not valid JSON ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{role} checkpoint {file} is a JSON {type(data).__name__}, expected an object")
    if not isinstance(data.get("model_type"), str) or not data["model_type"]:
        raise InputError(f"{role} checkpoint {file}: model_type = {data.get('model_type')!r}: expected a string such as 'llama'")
    arch = data.get("architectures")
    if arch is not None and (not isinstance(arch, list) or not all(isinstance(a, str) for a in arch)):
        raise InputError(f"{role} checkpoint {file}: architectures = {arch!r}: expected a list of class names")
    for name in INT_FIELDS:
        value = data.get(name)
        if value is None and name in ("num_key_value_heads", "head_dim", "n_inner"):
            continue
        if name in data and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{role} checkpoint {file}: {name} = {value!r}: expected a positive integer")
    return data


def check_dir(path: Path, role: str) -> None:
    if not path.exists():
        raise InputError(f"{role} checkpoint {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{role} checkpoint {path} is not a directory (expected a Hugging Face checkpoint dir)")
    if not (path / "config.json").is_file():
        raise InputError(f"{role} checkpoint {path} has no config.json")
    if not any(path.glob("*.safetensors")):
        if any(p for pattern in PICKLE_GLOBS for p in path.glob(pattern)):
            raise InputError(f"{role} checkpoint {path} has only pickled weights (.bin/.pt), which auditq never loads; "
                             "convert once in a trusted environment with `AutoModelForCausalLM.from_pretrained(dir)"
                             ".save_pretrained(dir, safe_serialization=True)`")
        raise InputError(f"{role} checkpoint {path} has no *.safetensors weights")
    if not any((path / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise InputError(f"{role} checkpoint {path} has no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)")


def load_tokenizer_json(path: Path, role: str):
    """The fast tokenizer from tokenizer.json (None when the checkpoint has none); InputError if it is broken."""
    file = path / "tokenizer.json"
    if not file.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # noqa: BLE001 - the Rust parser raises plain Exception subclasses
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"{role} checkpoint {file} is not a readable tokenizer: {first}") from None


def _expect(entry: TensorEntry | None, dim: int, want: Any, field: str, config_file: Path) -> None:
    if entry is None or want is None or len(entry.shape) <= dim:
        return
    if entry.shape[dim] != want:
        raise InputError(f"{config_file}: {field} = {want} but tensor {entry.name!r} has shape {list(entry.shape)} "
                         "in the safetensors files (config and weights disagree)")


def check_headers_against_config(path: Path, role: str, config: dict[str, Any]) -> dict[str, TensorEntry]:
    """Parse every safetensors header and compare the common shapes with config.json."""
    tensors = read_checkpoint_headers(path)
    file = path / "config.json"
    hidden = config.get("hidden_size", config.get("n_embd"))
    vocab = config.get("vocab_size")
    layers = config.get("num_hidden_layers", config.get("n_layer"))
    inter = config.get("intermediate_size")
    heads = config.get("num_attention_heads", config.get("n_head"))
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or (hidden // heads if hidden and heads and hidden % heads == 0 else None)

    def first(*suffixes: str) -> TensorEntry | None:
        return next((e for n, e in sorted(tensors.items()) if n.endswith(suffixes)), None)

    embed = first("embed_tokens.weight", "wte.weight", "word_embeddings.weight")
    _expect(embed, 0, vocab, "vocab_size", file)
    _expect(embed, 1, hidden, "hidden_size", file)
    head = tensors.get("lm_head.weight")
    _expect(head, 0, vocab, "vocab_size", file)
    _expect(head, 1, hidden, "hidden_size", file)
    _expect(first("mlp.up_proj.weight", "mlp.gate_proj.weight"), 0, inter, "intermediate_size", file)
    _expect(first("mlp.down_proj.weight"), 1, inter, "intermediate_size", file)
    q = first("self_attn.q_proj.weight")
    _expect(q, 1, hidden, "hidden_size", file)
    _expect(q, 0, heads * head_dim if heads and head_dim else None, "num_attention_heads × head_dim", file)
    _expect(first("self_attn.k_proj.weight"), 0, kv_heads * head_dim if kv_heads and head_dim else None,
            "num_key_value_heads × head_dim", file)
    indices = {int(m.group(1)) for n in tensors for m in [_LAYER.search(n)] if m}
    if layers and indices and indices != set(range(layers)):
        raise InputError(f"{file}: num_hidden_layers = {layers} but the safetensors files hold layer(s) "
                         f"{min(indices)}..{max(indices)} ({len(indices)} distinct)")
    return tensors


def check_compatible_configs(base: dict[str, Any], other: dict[str, Any], role: str) -> None:
    if base.get("architectures") != other.get("architectures"):
        raise InputError(f"base and {role} checkpoints differ in architectures: "
                         f"{base.get('architectures')} vs {other.get('architectures')}")
    for name in ARCH_FIELDS:
        if base.get(name) != other.get(name):
            raise InputError(f"base and {role} checkpoints differ in {name}: {base.get(name)} vs {other.get(name)}")


def validate_checkpoint(path: Path, role: str) -> tuple[dict[str, Any], Any]:
    """Every light check of one checkpoint dir: (config.json, tokenizer or None)."""
    path = Path(path)
    check_dir(path, role)
    config = read_config(path, role)
    for name in SIDE_JSON:  # what transformers parses later with plain json.load (a deep one: RecursionError)
        side = path / name
        if side.is_file():
            try:
                if not isinstance(loads_json(side.read_text(encoding="utf-8"), side), dict):
                    raise ValueError("not an object")
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise InputError(f"{role} checkpoint {side} is not a JSON object ({exc})") from None
    check_headers_against_config(path, role, config)
    return config, load_tokenizer_json(path, role)
