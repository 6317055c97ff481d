"""Light checks of a checkpoint directory: files, config.json types, tokenizer.json, safetensors headers
against config.json's shapes — all without torch or transformers, so a refusal takes well under 2 s."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from auditq.checkpoint.files import PICKLE_GLOBS, TOKENIZER_FILES
from auditq.checkpoint.safetensors_header import TensorEntry, read_checkpoint_headers
from auditq.errors import InputError
from auditq.regular_file import present, read_text, require_regular
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
    text = read_text(file, f"{role} checkpoint")  # a FIFO or a loop: NotRegular, one line, never a block
    try:
        data = loads_json(text, file)
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
    bad = non_finite(data)
    if bad is not None:
        raise InputError(f"{role} checkpoint {file}: {bad[0]} = {bad[1]!r}: not a finite number (NaN and Infinity "
                         "are not JSON; transformers would build a model that computes NaN)")
    check_special_ids(data, f"{role} checkpoint {file}")
    return data


def non_finite(value: Any, where: str = "") -> tuple[str, float] | None:
    """(dotted path, value) of the first NaN or ±Infinity in a parsed JSON document, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(document)", value
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = non_finite(child, f"{where}.{key}" if where and isinstance(key, str) else
                           f"{where}[{key}]" if where else str(key))
        if found is not None:
            return found
    return None


#: config.json's token ids that index the embedding (eos may be a list)
SPECIAL_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")


def check_special_ids(config: dict[str, Any], where: str) -> None:
    """Every special token id must index a row of the embedding (-vocab_size <= id < vocab_size, as torch's
    Embedding accepts a padding_idx); an id past it fails inside transformers after the imports."""
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or isinstance(vocab, bool):
        return
    for name in SPECIAL_ID_FIELDS:
        value = config.get(name)
        ids = value if isinstance(value, list) else [value]
        for token_id in ids:
            if token_id is None:
                continue
            if isinstance(token_id, bool) or not isinstance(token_id, int):
                raise InputError(f"{where}: {name} = {value!r}: expected an integer token id (or a list of them)")
            if not -vocab <= token_id < vocab:
                raise InputError(f"{where}: {name} = {value!r} lies outside the embedding's {vocab} rows "
                                 f"(vocab_size = {vocab}; expected 0..{vocab - 1})")


def check_dir(path: Path, role: str) -> None:
    if not path.exists():
        raise InputError(f"{role} checkpoint {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{role} checkpoint {path} is not a directory (expected a Hugging Face checkpoint dir)")
    if not present(path / "config.json", f"{role} checkpoint"):  # a FIFO config.json is named as one
        raise InputError(f"{role} checkpoint {path} has no config.json")
    for name in ("generation_config.json", "model.safetensors.index.json", *TOKENIZER_FILES):
        # transformers and tokenizers open these themselves: a FIFO there would block them, so check first
        present(path / name, f"{role} checkpoint")
    for weights in path.glob("*.safetensors"):
        require_regular(weights, f"{role} checkpoint")
    if not any(path.glob("*.safetensors")):
        if any(p for pattern in PICKLE_GLOBS for p in path.glob(pattern)):
            raise InputError(f"{role} checkpoint {path} has only pickled weights (.bin/.pt), which auditq never loads; "
                             "convert once in a trusted environment with `AutoModelForCausalLM.from_pretrained(dir)"
                             ".save_pretrained(dir, safe_serialization=True)`")
        raise InputError(f"{role} checkpoint {path} has no *.safetensors weights")
    if not any(present(path / n) for n in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise InputError(f"{role} checkpoint {path} has no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)")


def load_tokenizer_json(path: Path, role: str):
    """The fast tokenizer from tokenizer.json (None when the checkpoint has none); InputError if it is broken."""
    file = path / "tokenizer.json"
    if not present(file, f"{role} checkpoint"):
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
    side_json = read_side_json(path, role)
    check_headers_against_config(path, role, config)
    tokenizer = load_tokenizer_json(path, role)
    check_tokenizer_specials(side_json.get("tokenizer_config.json"), tokenizer, config.get("vocab_size"),
                             path / "tokenizer_config.json", role)
    return config, tokenizer


def read_side_json(path: Path, role: str) -> dict[str, dict[str, Any]]:
    """The JSON files beside the weights that transformers parses later with plain json.load (a deep one:
    RecursionError there), parsed once here through the guarded parser: file name -> object."""
    found: dict[str, dict[str, Any]] = {}
    for name in SIDE_JSON:
        side = path / name
        if present(side, f"{role} checkpoint"):
            try:
                data = loads_json(read_text(side, f"{role} checkpoint"), side)
                if not isinstance(data, dict):
                    raise ValueError("not an object")
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise InputError(f"{role} checkpoint {side} is not a JSON object ({exc})") from None
            found[name] = data
    return found


def check_tokenizer_specials(data: dict[str, Any] | None, tokenizer: Any, vocab_size: Any, file: Path,
                             role: str) -> None:
    """tokenizer_config.json's pad/bos/eos/unk tokens must have ids inside the embedding: the audit pads
    batches with the pad id (or eos), and an id >= vocab_size fails in the first forward pass."""
    if data is None or tokenizer is None or not isinstance(vocab_size, int):
        return
    for name in ("pad_token", "bos_token", "eos_token", "unk_token"):
        value = data.get(name)
        content = value.get("content") if isinstance(value, dict) else value
        token_id = tokenizer.token_to_id(content) if isinstance(content, str) else None
        if token_id is not None and token_id >= vocab_size:
            raise InputError(f"{role} checkpoint {file}: {name} {content!r} has id {token_id}, outside the embedding's "
                             f"{vocab_size} rows (vocab_size in config.json)")


def check_same_tokenizer(base_tokenizer: Any, other_tokenizer: Any, role: str) -> None:
    """BASE and another role must share a vocabulary (the audit's own check, made from tokenizer.json with the
    light `tokenizers` library, before torch and transformers are imported). Skipped unless both have one."""
    if base_tokenizer is None or other_tokenizer is None:
        return
    base_vocab = base_tokenizer.get_vocab(with_added_tokens=True)
    other_vocab = other_tokenizer.get_vocab(with_added_tokens=True)
    if base_vocab != other_vocab:
        differ = sorted(set(base_vocab.items()) ^ set(other_vocab.items()))
        raise InputError(f"base and {role} checkpoints have different tokenizer vocabularies ({len(base_vocab)} vs "
                         f"{len(other_vocab)} tokens; first difference: {differ[0][0]!r})")
