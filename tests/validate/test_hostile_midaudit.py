"""Hostile inputs (issue 24) class 4, input errors found mid-audit, and class 8, slow refusals: every named
example is refused by the installed CLI (clean environment) with exit 2 and one line, no traceback, no
--out, inputs unchanged, quickly; class 8's refusals need no model class, so torch is never imported.
Further instances of each class are generated against the light checks in-process."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import build_world, copy, weights
from hostile_cases import (
    CLASS4,
    CLASS8,
    add_token,
    append_record,
    edit_config,
    gguf_file,
    layout,
    rewrite_data,
)

from auditq.checkpoint.directory import read_config
from auditq.checkpoint.gguf_header import GGML_SIZES, read_gguf_header
from auditq.checkpoint.placement_flags import cuda_missing
from auditq.checkpoint.safetensors_header import read_header
from auditq.errors import InputError
from auditq.suite.records import load_suite
from auditq.suite.settings import check_qa_template

#: generous: a loaded 2-core CI machine; the measured times are in docs/hostile-inputs.md
LIMIT_S = 10.0
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("midaudit"))


def clean_env(tmp: Path) -> dict[str, str]:
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp / "home"),
            "AUDITQ_CACHE_DIR": str(tmp / "cache"), "LANG": "C.UTF-8"}


def _fingerprint(root: Path) -> dict[str, str]:
    """Every file's sha256, but only size and mtime for files over 64 MiB (the sparse 100 GiB one)."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        out[str(path)] = (f"{stat.st_size}:{stat.st_mtime_ns}" if stat.st_size > 64 << 20
                          else hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def _refuse(world, tmp: Path, builder, heavy_ok: bool) -> float:
    base, unlearned, suite = (copy(world[k], tmp / k) for k in ("base", "unlearned", "suite"))
    case = builder(base, unlearned, suite, tmp)
    before = _fingerprint(tmp)
    out = tmp / "out"
    roles = [str(base), str(unlearned)] if case.command == "check" else [str(base)]
    argv = [case.command, *roles, "--suite", str(suite), "--out", str(out), *case.args]
    if case.command == "check":
        argv += ["-q"]
    # the installed entry point, reporting whether torch/transformers were imported before the refusal
    code = ("import sys\nfrom auditq.entry import main\n"
            f"sys.argv = ['auditq', *{argv!r}]\n"
            "try:\n    main()\nfinally:\n"
            "    print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env={**clean_env(tmp), **case.env}, capture_output=True,
                          text=True, timeout=300)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and case.expected in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists() and not [p for p in tmp.iterdir() if p.name.startswith(".out.")]
    assert _fingerprint(tmp) == before  # inputs unchanged
    assert heavy_ok or "HEAVY []" in proc.stdout, proc.stdout
    assert elapsed < LIMIT_S, f"refused after {elapsed:.1f} s"
    return elapsed


@pytest.mark.parametrize("name", sorted(CLASS4))
def test_class4_named_examples_refused_before_any_work(world, tmp_path, name):
    TIMES[name] = _refuse(world, tmp_path, CLASS4[name], heavy_ok=False)


@pytest.mark.parametrize("name", sorted(CLASS8))
def test_class8_named_examples_refused_fast_without_torch(world, tmp_path, name):
    TIMES[name] = _refuse(world, tmp_path, CLASS8[name], heavy_ok=False)


def test_the_unbroken_world_is_accepted_by_the_light_stage(world, tmp_path):
    """The checks above refuse the breakage, not the world: the same light checks pass the originals."""
    from auditq.audit.request import CheckOptions
    from auditq.validate.inputs import validate_check

    validated = validate_check(CheckOptions(base=world["base"], unlearned=world["unlearned"], suite=world["suite"],
                                            formats=("fp", "prune:wanda:0.5"), out=str(tmp_path / "out")))
    assert validated.suite.forget.texts
    header = read_gguf_header(gguf_file(tmp_path / "ok.gguf"))
    assert header["tensors"]["token_embd.weight"][1] == 0


# ---- class 4, generated instances ------------------------------------------------------------------

def _ckpt(world, tmp: Path) -> Path:
    return copy(world["unlearned"], tmp / "ckpt")


CORRUPTIONS = {
    "trailing 1 byte": lambda h, c: layout(h, c) + b"\0",
    "trailing 4 KiB": lambda h, c: layout(h, c) + b"\1" * 4096,
    "gap before the first tensor": lambda h, c: layout(h, c, gap_before=0, gap=2),
    "gap in the middle": lambda h, c: layout(h, c, gap_before=len(c) // 2, gap=64),
    "gap before the last tensor": lambda h, c: layout(h, c, gap_before=len(c) - 1, gap=1),
    "overlap": lambda h, c: layout(h, c, overlap_at=1) + b"\0" * 4,
    "overlap at the end": lambda h, c: layout(h, c, overlap_at=len(c) - 1) + b"\0" * 4,
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_safetensors_data_region_must_be_exactly_covered(world, tmp_path, kind):
    from safetensors import safe_open

    ckpt = _ckpt(world, tmp_path)
    rewrite_data(ckpt, CORRUPTIONS[kind])
    with pytest.raises(Exception) as loader:  # the real loader refuses it too: the light stage says so first
        with safe_open(str(weights(ckpt)), "np") as handle:
            [handle.get_tensor(k) for k in handle.keys()]
    assert "SafetensorError" in type(loader.value).__name__
    with pytest.raises(InputError, match="after the last tensor|before tensor|overlaps"):
        read_header(weights(ckpt))


def test_a_relaid_but_exact_region_is_accepted(world, tmp_path):
    ckpt = _ckpt(world, tmp_path)
    rewrite_data(ckpt, lambda h, c: layout(h, c))
    assert len(read_header(weights(ckpt))) > 5


NON_FINITE = {"rms_norm_eps": math.nan, "rope_theta": -math.inf,
              "rope_scaling": {"type": "linear", "factor": math.inf}, "initializer_range": math.nan}


@pytest.mark.parametrize("field", sorted(NON_FINITE))
def test_non_finite_config_values_are_refused(world, tmp_path, field):
    ckpt = _ckpt(world, tmp_path)
    edit_config(ckpt, **{field: NON_FINITE[field]})
    with pytest.raises(InputError, match=rf"{field}(\.factor)? = (nan|-?inf): not a finite number"):
        read_config(ckpt, "unlearned")


@pytest.mark.parametrize("fields", [{"pad_token_id": 400}, {"bos_token_id": 10**6}, {"eos_token_id": [1, 400]},
                                    {"pad_token_id": -401}, {"decoder_start_token_id": 999},
                                    {"eos_token_id": "1"}])
def test_special_token_ids_must_index_the_embedding(world, tmp_path, fields):
    ckpt = _ckpt(world, tmp_path)
    edit_config(ckpt, **fields)
    with pytest.raises(InputError, match=f"{next(iter(fields))} = "):
        read_config(ckpt, "unlearned")


def test_in_range_special_ids_pass(world, tmp_path):
    ckpt = _ckpt(world, tmp_path)
    edit_config(ckpt, pad_token_id=-1, eos_token_id=[1, 399], bos_token_id=None)
    assert read_config(ckpt, "unlearned")["eos_token_id"] == [1, 399]


@pytest.mark.parametrize("name", ["pad_token", "eos_token", "bos_token", "unk_token"])
@pytest.mark.parametrize("shape", ["string", "object"])
def test_tokenizer_config_specials_must_index_the_embedding(world, tmp_path, name, shape):
    from auditq.checkpoint.directory import validate_checkpoint

    ckpt = _ckpt(world, tmp_path)
    add_token(ckpt, "<far-pad>", 470)
    file = ckpt / "tokenizer_config.json"
    data = json.loads(file.read_text())
    data[name] = "<far-pad>" if shape == "string" else {"content": "<far-pad>", "special": True}
    file.write_text(json.dumps(data))
    with pytest.raises(InputError, match=f"{name} '<far-pad>' has id 4[07]0, outside the embedding"):
        validate_checkpoint(ckpt, "unlearned")
    data[name] = "<s>"
    file.write_text(json.dumps(data))
    assert validate_checkpoint(ckpt, "unlearned")[1] is not None  # an in-range token passes


@pytest.mark.parametrize("where", ["text", "template", "special"])
def test_tokens_beyond_the_embedding_are_refused(world, tmp_path, where):
    from auditq.checkpoint.directory import load_tokenizer_json
    from auditq.suite.validate import check_suite_lengths

    ckpt, suite = _ckpt(world, tmp_path), copy(world["suite"], tmp_path / "suite")
    add_token(ckpt, "<far>", 457)
    if where == "text":
        append_record(suite, json.dumps({"id": "far", "text": "Anna <far> was born in Krakow, in the south."}), "holdout")
    elif where == "template":
        (suite / "suite.toml").write_text((suite / "suite.toml").read_text() + 'qa_template = "<far> {question}"\n')
    else:  # the post-processor's BOS is the new token
        data = json.loads((ckpt / "tokenizer.json").read_text())
        data["post_processor"]["special_tokens"]["<s>"]["ids"] = [457]
        (ckpt / "tokenizer.json").write_text(json.dumps(data))
    tokenizer = load_tokenizer_json(ckpt, "unlearned")
    with pytest.raises(InputError, match=r"id (400|457), beyond the embedding"):
        check_suite_lengths(load_suite(suite), {}, ("verbmem",), tokenizer, read_config(ckpt, "unlearned"))


@pytest.mark.parametrize("template", ["{question!r}", "{question!s}", "{question!a}", "{question!z}",
                                      "{question:>10}", "{question:{x}}", "{question:{question}}", "{question!r:^5}"])
def test_templates_with_a_conversion_or_spec_are_refused(template):
    with pytest.raises(InputError, match="conversion or format spec"):
        check_qa_template(f"Q: {template}\nA:", "suite.toml: [probes] qa_template")
    assert check_qa_template("Q: {question}\nA:", "w")


@pytest.mark.parametrize("field, escaped", [("text", "\\ud800"), ("text", "\\udfff tail"), ("question", "\\udc00"),
                                            ("answer", "x\\ud83d"), ("id", "\\ud801")])
def test_lone_surrogates_are_refused_in_every_field(world, tmp_path, field, escaped):
    suite = copy(world["suite"], tmp_path / "suite")
    record = {"id": "s", "text": "Plain text here.", "question": "Q?", "answer": "A"}
    if field == "text" or field == "id":
        record.pop("question"), record.pop("answer")
    else:
        record.pop("text")
    line = json.dumps(record).replace(f'"{record[field]}"', f'"{record[field]} {escaped}"', 1)
    append_record(suite, line, "retain")
    with pytest.raises(InputError, match=f"'{field}' holds a lone surrogate"):
        load_suite(suite)


def test_a_surrogate_pair_is_text(world, tmp_path):
    suite = copy(world["suite"], tmp_path / "suite")
    append_record(suite, '{"id": "emoji", "text": "A smile \\ud83d\\ude00 here."}', "retain")
    assert any("\U0001F600" in r.text for r in load_suite(suite).retain.texts)


@pytest.mark.parametrize("ggml_type", [4, 5, 31, 33, 36, 38, 42, 1000, 2**32 - 1])
def test_unknown_ggml_types_are_refused(tmp_path, ggml_type):
    pytest.importorskip("gguf")
    with pytest.raises(InputError, match=f"unknown ggml type {ggml_type}"):
        read_gguf_header(gguf_file(tmp_path / "t.gguf", ggml_type=ggml_type))


def test_ggml_sizes_agree_with_gguf():
    """Every type the gguf package defines is known, with its block size (Q8_1 apart: gguf-py still says
    4+4+32 bytes, ggml's block_q8_1 holds two halves: 36)."""
    gguf = pytest.importorskip("gguf")
    sizes = {int(t): tuple(s) for t, s in gguf.GGML_QUANT_SIZES.items()}
    assert set(sizes) == set(GGML_SIZES)
    assert {k: v for k, v in sizes.items() if k != 9} == {k: v for k, v in GGML_SIZES.items() if k != 9}


@pytest.mark.parametrize("formats", ["gptq4", "awq4", "prune:wanda:0.5", "relearn:generic:steps=2",
                                     "fp8+prune:wanda:2:4", "bnb:nf4+relearn:generic:lora=8"])
@pytest.mark.parametrize("source", ["suite file", "retain QA only", "--calibration file"])
def test_calibration_needing_formats_without_text_are_refused(world, tmp_path, formats, source):
    from auditq.formats import parse_format
    from auditq.validate.calibration import check_calibration_text

    suite = copy(world["suite"], tmp_path / "suite")
    lines = None
    if source == "suite file":
        (suite / "cal.txt").write_text(" \n\n\t\n")
        (suite / "suite.toml").write_text((suite / "suite.toml").read_text() + 'calibration = "cal.txt"\n')
    elif source == "retain QA only":
        (suite / "retain.jsonl").write_text('{"id": "q", "question": "Who?", "answer": "Her"}\n')
    else:
        lines = ()
    parsed = (parse_format("fp"), parse_format(formats))
    with pytest.raises(InputError, match="needs calibration text"):
        check_calibration_text(parsed, "cal.txt" if lines is not None else None, lines, load_suite(suite))
    check_calibration_text((parse_format("prune:magnitude:0.5"), parse_format("rtn4")), None, None, load_suite(suite))


# ---- class 8, generated instances: fast and torch-free ---------------------------------------------

@pytest.mark.parametrize("value", ["", "cuda", "cuda:3"])
def test_cuda_missing_reasons_without_importing_torch(value, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert (cuda_missing(value) is None) == (value == "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    import torch  # here only to learn what kind of build is installed

    if torch.version.cuda is None and torch.version.hip is None and value:
        assert "CPU-only build" in cuda_missing(value)


@pytest.mark.slow
@pytest.mark.parametrize("name, edit", [
    ("today", lambda b, u, s, t: __import__("hostile_cases").Case(env={"AUDITQ_TODAY": "2026-02-30"},
                                                                  expected="AUDITQ_TODAY='2026-02-30'")),
    ("gguf layers", lambda b, u, s, t: __import__("hostile_cases").Case(
        args=("--artifact", str(gguf_file(t / "g.gguf", layers=3))), expected="num_hidden_layers 3 vs 2")),
    ("gguf vocab", lambda b, u, s, t: __import__("hostile_cases").Case(
        args=("--base-artifact", str(gguf_file(t / "b.gguf", vocab=32000)), "--artifact",
              str(gguf_file(t / "g.gguf"))), expected="vocab 32000 vs 400")),
    ("record chars", lambda b, u, s, t: (append_record(s, json.dumps({"id": "w", "text": "x" * 300_000}), "retain"),
                                         __import__("hostile_cases").Case(expected="record 'w' is 300000"))[1]),
    ("tokenizer token", lambda b, u, s, t: (add_token(b, "<only-in-base>", 400), __import__("hostile_cases").Case(
        expected="different tokenizer vocabularies"))[1]),
    ("sparse 1 GiB", lambda b, u, s, t: (os.truncate(weights(b), 2**30), __import__("hostile_cases").Case(
        expected="data byte(s) after the last tensor"))[1]),
    ("remediate lr inf", lambda b, u, s, t: __import__("hostile_cases").Case(
        args=("--lr", "inf"), command="remediate", expected="--lr = inf: expected a finite number")),
])
def test_class8_more_instances_refused_fast(world, tmp_path, name, edit):
    TIMES[name] = _refuse(world, tmp_path, edit, heavy_ok=False)
