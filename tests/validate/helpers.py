"""Inputs for the bad-input matrix: a tiny real checkpoint pair and suite, copied and broken per case."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import torch
from formats.gguf_helpers import build_llama_checkpoint
from suite_files import write_suite

TEXTS = [{"id": f"t{i}", "text": f"The quick brown fox number {i} jumps over the lazy dog in Warsaw."} for i in range(6)]
QA = [{"id": f"q{i}", "question": f"Where was Marie {i} born?", "answer": "Warsaw"} for i in range(3)]
#: questions about holdout records (the KnowMem non-member floor)
HOLDOUT_QA = [{"id": f"h{i}", "question": f"Where was Anna {i} born?", "answer": "Krakow"} for i in range(3)]
SUITE_TOML = "[probes]\nprefix_tokens = 4\nmax_new_tokens = 6\nanswer_tokens = 4\n"


def build_world(root: Path) -> dict[str, Path]:
    base = build_llama_checkpoint(root / "base", hidden=64, intermediate=128, seed=0)
    unlearned = build_llama_checkpoint(root / "unlearned", hidden=64, intermediate=128, seed=1)
    suite = write_suite(root / "suite", forget=TEXTS[:3] + QA, retain=TEXTS[3:] + QA, holdout=TEXTS[3:] + HOLDOUT_QA,
                        toml=SUITE_TOML)
    return {"base": base, "unlearned": unlearned, "suite": suite}


def tree_digest(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (inputs must stay byte-identical)."""
    out = {}
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def weights(path: Path) -> Path:
    return path / "model.safetensors"


def rewrite_tensors(path: Path, edit) -> None:
    """Load the safetensors file, let `edit(dict)` change it, save it back."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights(path))
    edit(tensors)
    save_file(tensors, weights(path), metadata={"format": "pt"})


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    data = edit(data)
    path.write_text(json.dumps(data))


def header_with(path: Path, mutate) -> None:
    """Rewrite the safetensors JSON header in place (same data bytes)."""
    raw = weights(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    mutate(header)
    text = json.dumps(header).encode()
    weights(path).write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def garbage_gguf(path: Path) -> Path:
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + struct.pack("<QQ", 2, 1) + b"\xff" * 64)
    return path


def nan_in(name: str, value: float):
    def edit(tensors):
        t = tensors[name].clone()
        t.view(-1)[0] = value
        tensors[name] = t
    return edit


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


__all__ = ["build_world", "tree_digest", "rewrite_tensors", "edit_json", "header_with", "garbage_gguf",
           "nan_in", "copy", "weights", "torch"]
