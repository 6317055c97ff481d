"""The bad-input matrix (issue 11): every case exits 2 with one line on stderr, no traceback, creates no
--out and leaves every input byte-identical. Inputs are tiny and built here; each case breaks a copy."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import (
    build_world,
    copy,
    edit_json,
    garbage_gguf,
    header_with,
    nan_in,
    rewrite_tensors,
    tree_digest,
    weights,
)
from tiny_memoriser import run_cli


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


class Case:
    """A case gets a fresh tmp dir with copies of base/unlearned/suite and returns the CLI arguments."""

    def __init__(self, world, tmp: Path) -> None:
        self.tmp = tmp
        self.base = copy(world["base"], tmp / "base")
        self.unlearned = copy(world["unlearned"], tmp / "unlearned")
        self.suite = copy(world["suite"], tmp / "suite")
        self.out = tmp / "out"
        self.extra: list[str] = []
        self.out_arg: str | None = str(self.out)
        self.env: dict[str, str] = {}
        self.cwd: Path | None = None

    def args(self) -> list[str]:
        args = ["check", str(self.base), str(self.unlearned), "--suite", str(self.suite), "-q", "--threads", "1"]
        if "-f" not in self.extra:
            args += ["-f", "fp"]
        if self.out_arg is not None:
            args += ["--out", self.out_arg]
        return args + self.extra

    def suite_toml(self, text: str) -> None:
        (self.suite / "suite.toml").write_text(text)


def _set(field, value):
    return lambda c: edit_json(c.unlearned / "config.json", lambda d: {**d, field: value})


def _set_many(**fields):
    def apply(c):
        for path in (c.base, c.unlearned):
            edit_json(path / "config.json", lambda d: {**d, **fields})
    return apply


def _both(field, value):
    def apply(c):
        for path in (c.base, c.unlearned):
            edit_json(path / "config.json", lambda d: {**d, field: value})
    return apply


def _truncate(keep):
    def apply(c):
        data = weights(c.unlearned).read_bytes()
        weights(c.unlearned).write_bytes(data[:keep] if keep >= 0 else data[:keep])
    return apply


def _flag(*flags):
    return lambda c: c.extra.extend(flags)


def _toml(text):
    return lambda c: c.suite_toml(text)


def _jsonl(split, lines):
    return lambda c: (c.suite / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def _config_file(text):
    def apply(c):
        (c.tmp / "auditq.toml").write_text(text)
        c.extra += ["--config", str(c.tmp / "auditq.toml")]
    return apply


def _waivers(text):
    def apply(c):
        (c.tmp / "w.toml").write_text(text)
        c.extra += ["--waivers", str(c.tmp / "w.toml")]
    return apply


def _out(make):
    def apply(c):
        c.out_arg = make(c)
    return apply


def _symlink_to_base(c):
    (c.tmp / "link").symlink_to(c.base, target_is_directory=True)
    return str(c.tmp / "link")


def _parent_is_file(c):
    (c.tmp / "afile").write_text("x")
    return str(c.tmp / "afile" / "out")


def _foreign_dir(c):
    (c.tmp / "mine").mkdir()
    (c.tmp / "mine" / "notes.txt").write_text("my notes")
    return str(c.tmp / "mine")


def _pyproject(c):
    (c.tmp / "pyproject.toml").write_text("tool = 5\n")
    c.cwd = c.tmp


def _cache_is_file(c):
    (c.tmp / "cachefile").write_text("x")
    c.env["AUDITQ_CACHE_DIR"] = str(c.tmp / "cachefile")


def _gguf(c):
    c.extra += ["--artifact", str(garbage_gguf(c.tmp / "model-q4.gguf"))]


def _pickle(c):
    weights(c.unlearned).rename(c.unlearned / "pytorch_model.bin")


def _drop_tensor(c):
    rewrite_tensors(c.unlearned, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))


def _extra_tensor(c):
    import torch

    rewrite_tensors(c.unlearned, lambda t: t.__setitem__("model.layers.0.extra.weight", torch.zeros(4, 4)))


def _wrong_shape(c):
    import torch

    rewrite_tensors(c.unlearned, lambda t: t.__setitem__("model.norm.weight", torch.ones(63)))


def _drop_everywhere(c):
    for path in (c.base, c.unlearned):
        rewrite_tensors(path, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))


def _int_tensor(c):
    import torch

    rewrite_tensors(c.unlearned, lambda t: t.__setitem__("model.norm.weight", torch.ones(64, dtype=torch.int32)))


def _offsets_past_end(c):
    def mutate(header):
        name = next(k for k in header if k != "__metadata__")
        start, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [start + 10 ** 9, end + 10 ** 9]
    header_with(c.unlearned, mutate)


def _broken_merges(c):
    edit_json(c.unlearned / "tokenizer.json", lambda d: {**d, "model": {**d["model"], "merges": [[1, 2, 3], 5]}})


def _long_record(c):
    lines = [json.dumps(t) for t in json.loads("[" + ",".join((c.suite / "forget.jsonl").read_text().split("\n")[:-1]) + "]")]
    lines.append(json.dumps({"id": "huge", "text": "word " * 200_000}))
    (c.suite / "forget.jsonl").write_text("\n".join(lines) + "\n")


CASES = {
    # checkpoints
    "missing_dir": (lambda c: shutil.rmtree(c.unlearned), "does not exist"),
    "pickle_only": (_pickle, "only pickled weights"),
    "zero_byte_weights": (_truncate(0), "not a safetensors file"),
    "truncated_4_bytes": (_truncate(4), "not a safetensors file"),
    "truncated_data": (_truncate(-100), "outside the"),
    "garbage_header": (lambda c: weights(c.unlearned).write_bytes((40).to_bytes(8, "little") + b"\x00garbage!" * 10),
                       "header is not valid JSON"),
    "oversized_header": (lambda c: weights(c.unlearned).write_bytes((2 ** 40).to_bytes(8, "little") + b"{}"),
                         "header length"),
    "offsets_past_end": (_offsets_past_end, "outside the"),
    "config_is_list": (lambda c: (c.unlearned / "config.json").write_text("[1, 2]"), "is a JSON list"),
    "config_not_json": (lambda c: (c.unlearned / "config.json").write_text("{nope"), "not valid JSON"),
    "layers_string": (_set("num_hidden_layers", "four"), "num_hidden_layers = 'four'"),
    "layers_bool": (_set("num_hidden_layers", True), "num_hidden_layers = True"),
    "vocab_negative": (_set("vocab_size", -3), "vocab_size = -3"),
    "configs_agree_weights_not": (_both("intermediate_size", 96), "intermediate_size = 96"),
    "layers_agree_weights_not": (_both("num_hidden_layers", 3), "num_hidden_layers = 3"),
    "config_disagrees_with_weights": (_set("hidden_size", 32), "hidden_size = 32 but tensor"),
    # the light stage compares UNLEARNED's safetensors headers with BASE's (auditq.checkpoint.tensor_match)
    "missing_tensor": (_drop_tensor, "lacks 1 tensor(s) of base (model.layers.1.mlp.down_proj.weight; "
                                     "in base's model.safetensors)"),
    "unexpected_tensor": (_extra_tensor, "has 1 tensor(s) base does not (model.layers.0.extra.weight"),
    "wrong_shape_tensor": (_wrong_shape, "model.norm.weight [63] vs base [64]"),
    "int_dtype_tensor": (_int_tensor, "model.norm.weight I32 vs base F32"),
    # every checkpoint lacks it: they agree, the meta-device check judges them against the architecture
    "missing_tensor_everywhere": (_drop_everywhere, "lacks 1 tensor(s) its architecture needs: "
                                                    "model.layers.1.mlp.down_proj.weight"),
    "nan_weight": (lambda c: rewrite_tensors(c.unlearned, nan_in("model.layers.0.self_attn.q_proj.weight", float("nan"))),
                   "NaN or Inf values"),
    "inf_weight": (lambda c: rewrite_tensors(c.unlearned, nan_in("lm_head.weight", float("inf"))), "lm_head.weight"),
    "custom_code": (_set_many(model_type="acme-lm", auto_map={"AutoConfig": "configuration_acme.AcmeConfig",
                                                             "AutoModelForCausalLM": "modeling_acme.AcmeLM"}),
                    "--trust-remote-code"),
    "broken_merges": (_broken_merges, "not a readable tokenizer"),
    "tokenizer_not_json": (lambda c: (c.unlearned / "tokenizer.json").write_text("{"), "not a readable tokenizer"),
    # suite
    "prefix_string": (_toml('[probes]\nprefix_tokens = "16"\n'), "prefix_tokens = '16'"),
    "prefix_float": (_toml("[probes]\nprefix_tokens = 16.5\n"), "prefix_tokens = 16.5"),
    "prefix_bool": (_toml("[probes]\nprefix_tokens = true\n"), "prefix_tokens = True"),
    "prefix_too_long": (_toml("[probes]\nprefix_tokens = 400\n"), "every forget text is at most"),
    "qa_template_int": (_toml("[probes]\nqa_template = 42\n"), "qa_template = 42"),
    "qa_template_no_question": (_toml('[probes]\nqa_template = "Answer:"\n'), "exactly once"),
    "qa_template_twice": (_toml('[probes]\nqa_template = "{question} {question}"\n'), "exactly once"),
    "qa_template_context": (_toml('[probes]\nqa_template = "{context} {question}"\n'), "{context}"),
    "qa_template_unbalanced": (_toml('[probes]\nqa_template = "Q: {question"\n'), "not a valid template"),
    "probes_table_int": (_toml("probes = 5\n"), "expected a [probes] table"),
    "mink_k_zero": (_toml("[probes]\nmink_k = 0\n"), "mink_k = 0"),
    "calibration_outside": (_toml('[probes]\ncalibration = "../../etc/passwd"\n'), "inside the suite directory"),
    "duplicate_ids": (_jsonl("holdout", ['{"id": "a", "text": "one two"}', '{"id": "a", "text": "three"}']),
                      "duplicate id 'a'"),
    "malformed_jsonl": (_jsonl("holdout", ['{"text": "ok"}', '{"text": ']), "malformed JSON"),
    "huge_record": (_long_record, "longer than the model's context"),
    # config, waivers, cache
    "confidence_5": (_config_file("confidence = 5\n"), "confidence = 5"),
    "threshold_nan_file": (_config_file("[checks.recovery]\nthreshold = nan\n"), "expected a finite number"),
    "threshold_string": (_config_file('[checks.recovery]\nthreshold = "x"\n'), "expected a finite number"),
    "threshold_nan_flag": (_flag("--threshold", "recovery=nan"), "expected a finite number"),
    "config_is_dir": (lambda c: c.extra.extend(["--config", str(c.tmp)]), "is a directory"),
    "pyproject_tool_int": (_pyproject, "tool = 5"),
    "waiver_bad_check": (_waivers('[[waivers]]\ncheck = "nope"\nformat = "fp"\nreason = "r"\nexpires = 2030-01-01\n'),
                         "is not a check family"),
    "waivers_is_dir": (lambda c: c.extra.extend(["--waivers", str(c.tmp)]), "is a directory"),
    "cache_dir_is_file": (_cache_is_file, "is not a directory"),
    # flags
    "probes_empty": (_flag("--probes", ","), "--probes"),
    "probes_unknown": (_flag("--probes", "verbmem,bogus"), "bogus"),
    "probes_twice": (_flag("--probes", "mia,mia"), "mia listed twice"),
    "formats_twice": (_flag("-f", "rtn4,rtn4"), "rtn4 listed twice"),
    "stack_twice": (_flag("-f", "fp8+prune:2:4,fp8 + prune:2:4"), "fp8+prune:2:4 listed twice"),
    "format_unknown_family": (_flag("-f", "fp,bogus4"), "unknown format family"),
    "format_bad_option": (_flag("-f", "rtn4:g0"), "group size 0 must be a positive integer"),
    # every family's options are checked by its torch-free parser (auditq.formats.options)
    "format_gguf_type": (_flag("-f", "fp,gguf:q9_z"), "--formats gguf:q9_z: unknown GGUF type 'q9_z'"),
    "format_gptq_group": (_flag("-f", "gptq4:g7"), "--formats gptq4:g7: group size must be a power of two"),
    "format_bnb_type": (_flag("-f", "bnb:nf5"), "--formats bnb:nf5: unknown bitsandbytes type 'nf5'"),
    "format_prune_sparsity": (_flag("-f", "prune:1.5"), "--formats prune:1.5: sparsity must be in (0, 1)"),
    "format_relearn_lr": (_flag("-f", "relearn:retain:lr=2"), "lr must be positive and below 1 (got 2)"),
    "format_fp8_block": (_flag("-f", "fp8:block0"), "--formats fp8:block0: unknown fp8 option 'block0'"),
    "format_stack_bad_part": (_flag("-f", "fp8+rtn4:g0"), "--formats fp8+rtn4:g0: rtn4:g0: group size 0"),
    "format_stack_rule": (_flag("-f", "bnb:nf4+relearn:retain"), "only be relearned with LoRA"),
    "format_relearn_preset_option": (_flag("-f", "relearn:lucki:lr=1e-3"), "published recipe and takes no options"),
    "format_relearn_uds_no_retrain": (_flag("-f", "fp,relearn:uds"), "relearn:uds relearns and scores the same"),
    "format_stack_uds_no_retrain": (_flag("-f", "prune:2:4+relearn:uds"), "it needs --retrain"),
    "prefix_flag_zero": (_flag("--prefix-tokens", "0"), "--prefix-tokens = 0"),
    "mink_flag": (_flag("--mink-k", "1.5"), "--mink-k = 1.5"),
    "fail_on": (_flag("--fail-on", "maybe"), "--fail-on"),
    "seeds_zero": (_flag("--seeds", "0"), "--seeds = 0: expected an integer in 1..1000"),
    "privleak_reference_one": (_flag("--privleak-reference-auc", "1"), "expected a finite number in (0, 1)"),
    "privleak_reference_zero": (_flag("--privleak-reference-auc", "0"), "expected a finite number in (0, 1)"),
    "privleak_reference_nan": (_flag("--privleak-reference-auc", "nan"), "expected a finite number in (0, 1)"),
    "privleak_reference_with_retrain": (lambda c: c.extra.extend(
        ["--privleak-reference-auc", "0.4772", "--retrain", str(c.unlearned)]),
                                        "give one, not both"),
    "usage_bad_int": (_flag("--seed", "abc"), "Invalid value for '--seed'"),
    "usage_unknown_option": (_flag("--bogus"), "No such option: --bogus"),
    "usage_batch_zero": (_flag("--batch-size", "0"), "--batch-size"),
    "report_format": (_flag("--format", "pdf"), "unknown report format"),
    "verify_cache_negative": (_flag("--verify-cache", "-1"), "--verify-cache"),
    "calibration_missing": (lambda c: c.extra.extend(["--calibration", str(c.tmp / "nope.txt")]), "no such file"),
    # --out
    "out_empty": (_out(lambda c: ""), "--out ''"),
    "out_is_base": (_out(lambda c: str(c.base)), "overlaps the input"),
    "out_inside_base": (_out(lambda c: str(c.base / "reports")), "overlaps the input"),
    "out_symlink_to_base": (_out(_symlink_to_base), "overlaps the input"),
    "out_is_suite": (_out(lambda c: str(c.suite)), "overlaps the input"),
    "out_contains_input": (_out(lambda c: str(c.tmp)), "overlaps the input"),
    "out_parent_is_file": (_out(_parent_is_file), "is not a directory"),
    "out_under_proc": (_out(lambda c: "/proc/auditq-out"), "cannot write"),
    "out_foreign_dir": (_out(_foreign_dir), "pass --force"),
    "out_is_cwd": (lambda c: [setattr(c, "cwd", c.tmp / "work"), (c.tmp / "work").mkdir(), setattr(c, "out_arg", ".")],
                   "current directory"),
    # artifacts
    "gguf_garbage_body": (_gguf, "not a readable GGUF file"),
    "artifact_missing": (lambda c: c.extra.extend(["--artifact", str(c.tmp / "none.gguf")]), "does not exist"),
    "artifact_kind": (lambda c: [(c.tmp / "m.onnx").write_text("x"), c.extra.extend(["--artifact", str(c.tmp / "m.onnx")])],
                      "unsupported artifact"),
}


def test_matrix_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(world, tmp_path, monkeypatch, capsys, name):
    case = Case(world, tmp_path)
    make, expected = CASES[name]
    make(case)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    if case.cwd is not None:
        monkeypatch.chdir(case.cwd)
    before = tree_digest(*[p for p in (case.base, case.unlearned, case.suite) if p.exists()])
    existed = {p.name for p in tmp_path.iterdir()}
    code, out, err = run_cli(monkeypatch, capsys, *case.args())
    assert code == 2, (code, err, out[-2000:])
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out
    assert expected in err, err
    assert not case.out.exists() or name == "out_contains_input"
    assert {p.name for p in tmp_path.iterdir()} == existed  # nothing new next to the inputs (no staging dir)
    after = tree_digest(*[p for p in (case.base, case.unlearned, case.suite) if p.exists()])
    assert after == before


REMEDIATE_CASES = {
    "zero_byte_weights_dry_run": (lambda c: weights(c.base).write_bytes(b""), ["--dry-run"], "not a safetensors file"),
    "out_under_proc": (lambda c: None, ["--out", "/proc/auditq-remediated"], "cannot write"),
    "out_empty": (lambda c: None, ["--out", ""], "--out ''"),
    "out_is_base": (lambda c: None, ["--out", "BASE"], "overlaps the input"),
    "format_option": (lambda c: None, ["--dry-run", "-f", "fp,gguf:q9_z"], "--formats gguf:q9_z: unknown GGUF type"),
    "retrain_missing_tensor": (_drop_tensor, ["--dry-run", "--retrain", "UNLEARNED"],
                               "retrain checkpoint UNLEARNED lacks 1 tensor(s) of base"),
}


@pytest.mark.parametrize("name", sorted(REMEDIATE_CASES))
def test_remediate_refuses_before_any_training(world, tmp_path, monkeypatch, capsys, name):
    case = Case(world, tmp_path)
    make, extra, expected = REMEDIATE_CASES[name]
    make(case)
    before = tree_digest(case.base, case.suite)
    names = {"BASE": str(case.base), "UNLEARNED": str(case.unlearned)}
    extra = [names.get(e, e) for e in extra]
    expected = expected.replace("UNLEARNED", str(case.unlearned))
    code, out, err = run_cli(monkeypatch, capsys, "remediate", str(case.base), "--suite", str(case.suite), "-q",
                             "--threads", "1", *extra)
    assert code == 2, (code, err, out[-1000:])
    assert len(err.strip().splitlines()) == 1 and expected in err and "Traceback" not in err + out
    assert tree_digest(case.base, case.suite) == before
