"""The named examples of issue 24 classes 4 (input errors found mid-audit) and 8 (slow refusals), as case
builders shared by tests/validate/test_hostile_midaudit.py and bench/bench_refusal_hostile.py.

Each builder breaks copies of a tiny world (base, unlearned, suite under `case`) and returns a Case: the
extra `auditq check` arguments, extra environment, the expected start of the one-line refusal, and whether
the refusal must come before torch is imported."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from helpers import weights


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    expected: str = ""
    command: str = "check"


def append_record(suite: Path, line: str, split: str = "forget") -> None:
    with (suite / f"{split}.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("\n" + line + "\n")


def edit_config(path: Path, **fields) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(fields)
    (path / "config.json").write_text(json.dumps(config))  # json.dumps writes NaN / Infinity literals


def rewrite_data(path: Path, mutate) -> None:
    """Let `mutate(header, chunks)` move tensors (chunks: name -> bytes) and return the new data region."""
    raw = weights(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    chunks = {k: raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in header.items()
              if k != "__metadata__"}
    data = mutate(header, chunks)
    text = json.dumps(header).encode()
    weights(path).write_bytes(len(text).to_bytes(8, "little") + text + data)


def layout(header: dict, chunks: dict, gap_before: int = -1, gap: int = 8, overlap_at: int = -1) -> bytes:
    """Re-lay the tensors in offset order with `gap` zero bytes before tensor number `gap_before`, or the
    tensor number `overlap_at` starting 4 bytes early (the region shrinks by 4)."""
    names = sorted(chunks, key=lambda k: header[k]["data_offsets"][0])
    data = b""
    for i, name in enumerate(names):
        if i == gap_before:
            data += b"\0" * gap
        start = len(data) - (4 if i == overlap_at else 0)
        data = data[:start] + chunks[name]
        header[name]["data_offsets"] = [start, start + len(chunks[name])]
    return data


def gguf_file(path: Path, hidden: int = 64, layers: int = 2, vocab: int | None = None, ggml_type: int | None = None):
    """A small real GGUF (gguf's own writer); `ggml_type` then overwrites the tensor's type id in place."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_embedding_length(hidden)
    if vocab is not None:
        writer.add_vocab_size(vocab)
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if ggml_type is not None:
        raw = bytearray(path.read_bytes())
        name = b"token_embd.weight"
        at = raw.index(struct.pack("<Q", len(name)) + name) + 8 + len(name) + 4 + 2 * 8  # after n_dims and dims
        raw[at:at + 4] = struct.pack("<I", ggml_type)
        path.write_bytes(bytes(raw))
    return path


def add_token(checkpoint: Path, content: str, token_id: int) -> None:
    """Give the tokenizer one more (added) token with `token_id`."""
    file = checkpoint / "tokenizer.json"
    data = json.loads(file.read_text())
    data["added_tokens"].append({"id": token_id, "content": content, "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": False})
    file.write_text(json.dumps(data))


# ---- the named examples ----------------------------------------------------------------------------

def st_trailing_byte(b, u, s, t):
    with weights(u).open("ab") as handle:
        handle.write(b"\0")
    return Case(expected="data byte(s) after the last tensor")


def st_gap(b, u, s, t):
    rewrite_data(u, lambda h, c: layout(h, c, gap_before=1))
    return Case(expected="unused data byte(s) before tensor")


def st_overlap(b, u, s, t):
    def mutate(header, chunks):
        return layout(header, chunks, overlap_at=2) + b"\0" * 4  # same size as before
    rewrite_data(u, mutate)
    return Case(expected="overlaps the previous tensor")


def config_nan(b, u, s, t):
    edit_config(u, rms_norm_eps=float("nan"))
    return Case(expected="rms_norm_eps = nan: not a finite number")


def config_infinity(b, u, s, t):
    edit_config(u, rope_theta=float("inf"))
    return Case(expected="rope_theta = inf: not a finite number")


def pad_out_of_range(b, u, s, t):
    edit_config(u, pad_token_id=400)
    return Case(expected="pad_token_id = 400 lies outside the embedding's 400 rows")


def tokenizer_beyond_embedding(b, u, s, t):
    for checkpoint in (b, u):
        add_token(checkpoint, "<zz>", 431)
    append_record(s, json.dumps({"id": "beyond", "text": "Marie <zz> was born in Warsaw, the capital of Poland."}))
    return Case(expected="record 'beyond' tokenizes to id 400, beyond the embedding")


def tokenizer_pad_beyond_embedding(b, u, s, t):
    for checkpoint in (b, u):
        add_token(checkpoint, "<pad2>", 400)
        config = json.loads((checkpoint / "tokenizer_config.json").read_text())
        (checkpoint / "tokenizer_config.json").write_text(json.dumps({**config, "pad_token": "<pad2>"}))
    return Case(expected="pad_token '<pad2>' has id 400, outside the embedding")


def template_conversion(b, u, s, t):
    (s / "suite.toml").write_text((s / "suite.toml").read_text() + 'qa_template = "Q: {question!z} A:"\n')
    return Case(expected="placeholder {question!z} has a conversion or format spec")


def template_nested_spec(b, u, s, t):
    (s / "suite.toml").write_text((s / "suite.toml").read_text() + 'qa_template = "Q: {question:{x}} A:"\n')
    return Case(expected="placeholder {question:{x}} has a conversion or format spec")


def lone_surrogate(b, u, s, t):
    append_record(s, '{"id": "sur", "text": "Marie \\ud800 was born in Warsaw, the capital of Poland."}')
    return Case(expected="'text' holds a lone surrogate \\ud800")


def gguf_unknown_type(b, u, s, t):
    return Case(args=("--artifact", str(gguf_file(t / "unknown.gguf", ggml_type=77))),
                expected="has unknown ggml type 77")


def calibration_empty(b, u, s, t):
    (s / "calibration.txt").write_text("\n  \n")
    (s / "suite.toml").write_text((s / "suite.toml").read_text() + 'calibration = "calibration.txt"\n')
    return Case(args=("-f", "fp,prune:wanda:0.5"), expected="--formats prune:wanda:0.5 needs calibration text")


def tokenizer_differs(b, u, s, t):
    add_token(u, "<extra>", 400)
    return Case(expected="base and unlearned checkpoints have different tokenizer vocabularies")


def huge_suite_line(b, u, s, t):
    append_record(s, json.dumps({"id": "big", "text": "word " * 2_000_000}))  # 10 MB
    return Case(expected="record 'big' is 10000000 characters")


def device_cuda(b, u, s, t):
    return Case(args=("--device", "cuda"), env={"CUDA_VISIBLE_DEVICES": ""}, expected="--device cuda: no CUDA device")


def gguf_other_model(b, u, s, t):
    return Case(args=("--artifact", str(gguf_file(t / "other.gguf", hidden=96, layers=7))),
                expected="GGUF file of another model (llama): hidden_size 96 vs 64")


def today_invalid(b, u, s, t):
    return Case(env={"AUDITQ_TODAY": "2026-13-45"}, expected="AUDITQ_TODAY='2026-13-45' is not a date")


def remediate_lr_nan(b, u, s, t):
    return Case(args=("--lr", "nan"), command="remediate", expected="--lr = nan: expected a finite number")


def sparse_100g(b, u, s, t):
    os.truncate(weights(u), 100 * 2**30)  # sparse: no disk used
    return Case(expected="data byte(s) after the last tensor")


CLASS4 = {f.__name__: f for f in (st_trailing_byte, st_gap, st_overlap, config_nan, config_infinity, pad_out_of_range,
                                  tokenizer_beyond_embedding, tokenizer_pad_beyond_embedding,
                                  template_conversion, template_nested_spec,
                                  lone_surrogate, gguf_unknown_type, calibration_empty)}
CLASS8 = {f.__name__: f for f in (tokenizer_differs, huge_suite_line, device_cuda, gguf_other_model, today_invalid,
                                  remediate_lr_nan, sparse_100g)}
