"""The CLI contract: report files, determinism, and one-line errors with distinct exit codes."""

from __future__ import annotations

import json
import shutil

import pytest
from formats.gguf_helpers import build_llama_checkpoint
from suite_files import write_suite
from tiny_memoriser import run_cli

from auditq.checkpoint.load import fingerprint

#: holdout QA (never trained): the knowmem probe needs it, as the floor of forget KnowMem retention
HOLDOUT_QA = [{"id": "hq0", "question": "Who painted the red barn?", "answer": "Oren Vale"}]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    base = build_llama_checkpoint(root / "base", hidden=64, intermediate=128, seed=0)
    unlearned = build_llama_checkpoint(root / "unlearned", hidden=64, intermediate=128, seed=1)
    other = build_llama_checkpoint(root / "other", hidden=32, intermediate=128, seed=2)
    texts = [{"id": f"t{i}", "text": f"The quick brown fox number {i} jumps over the lazy dog in Warsaw."}
             for i in range(6)]
    qa = [{"id": f"q{i}", "question": f"Where was Marie {i} born?", "answer": "Warsaw"} for i in range(3)]
    suite = write_suite(root / "suite", forget=texts[:3] + qa, retain=texts[3:] + qa, holdout=texts[3:] + HOLDOUT_QA,
                        toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 6\nanswer_tokens = 4\n")
    return {"base": base, "unlearned": unlearned, "other": other, "suite": suite}


def test_out_writes_four_files_deterministically(pair, tmp_path, monkeypatch, capsys):
    before = {k: fingerprint(pair[k]) for k in ("base", "unlearned")}
    args = [str(pair["base"]), str(pair["unlearned"]), "--suite", str(pair["suite"]), "-f", "fp,rtn4:g32",
            "--quiet", "--threads", "1", "--no-cache"]  # a cached run differs in its provenance fields only
    code, out, _ = run_cli(monkeypatch, capsys, "check", *args, "--out", str(tmp_path / "a"))
    # random models memorise nothing and n < 20: nothing may PASS
    assert code in (1, 3)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["junit.xml", "report.json", "report.md", "samples.jsonl"]
    run_cli(monkeypatch, capsys, "check", *args, "--out", str(tmp_path / "b"))
    first = json.loads((tmp_path / "a" / "report.json").read_text())
    second = (tmp_path / "b" / "report.json").read_text()
    assert first["schema_version"] and first["checkpoints"]["base"]["files"]["model.safetensors"]
    assert [f["format"] for f in first["formats"]] == ["fp", "rtn4:g32"]
    strip = lambda text: text.replace(json.loads(text)["created"], "")  # noqa: E731
    assert strip((tmp_path / "a" / "report.json").read_text()) == strip(second)
    assert {k: fingerprint(pair[k]) for k in ("base", "unlearned")} == before  # inputs untouched
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no staging dir left behind


def _pickle_only(tmp_path, pair):
    target = tmp_path / "pickled"
    shutil.copytree(pair["base"], target)
    (target / "model.safetensors").rename(target / "pytorch_model.bin")
    return target


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("pickle", "only pickled weights"),
    ("arch", "differ in hidden_size"),
    ("format", "unknown format family"),
    ("suite", "malformed JSON"),
    ("out_is_file", "is not a directory"),
    ("threshold", "--threshold"),
    ("no_holdout_qa", "knowmem probe needs holdout QA"),
])
def test_bad_input_exits_2_with_one_line(pair, tmp_path, monkeypatch, capsys, case, expected):
    base, unl, suite = str(pair["base"]), str(pair["unlearned"]), str(pair["suite"])
    extra: list[str] = []
    if case == "missing":
        unl = str(tmp_path / "nope")
    elif case == "pickle":
        unl = str(_pickle_only(tmp_path, pair))
    elif case == "arch":
        unl = str(pair["other"])
    elif case == "format":
        extra = ["-f", "fp,bogus4"]
    elif case == "suite":
        bad = shutil.copytree(pair["suite"], tmp_path / "badsuite")
        (bad / "holdout.jsonl").write_text('{"text": "ok"}\n{"text": \n')
        suite = str(bad)
    elif case == "out_is_file":
        (tmp_path / "file").write_text("x")
        extra = ["--out", str(tmp_path / "file")]
    elif case == "threshold":
        extra = ["--threshold", "recovery"]
    elif case == "no_holdout_qa":  # KnowMem's retention floor needs questions about never-trained records
        bad = shutil.copytree(pair["suite"], tmp_path / "noqa")
        lines = (bad / "holdout.jsonl").read_text().splitlines()
        (bad / "holdout.jsonl").write_text("\n".join(line for line in lines if '"question"' not in line) + "\n")
        suite = str(bad)
    code, out, err = run_cli(monkeypatch, capsys, "check", base, unl, "--suite", suite, "-q", *extra)
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_artifact_gguf_file_is_one_more_row(pair, tmp_path, monkeypatch, capsys):
    """--artifact: a GGUF written outside the audit is scored by llama.cpp; the base gets a same-type stand-in."""
    pytest.importorskip("llama_cpp")
    from auditq.checkpoint.load import load_checkpoint
    from auditq.formats.gguf.convert import convert_to_gguf
    from auditq.formats.gguf.quantize import quantize_gguf

    unl = load_checkpoint(pair["unlearned"], "unlearned")
    f32 = convert_to_gguf(unl.model, unl.tokenizer, unl.config, tmp_path / "user-f32.gguf").path
    q8 = quantize_gguf(f32, tmp_path / "user-Q8_0.gguf", "q8_0")
    code, _, err = run_cli(monkeypatch, capsys, "check", str(pair["base"]), str(pair["unlearned"]),
                           "--suite", str(pair["suite"]), "-f", "fp", "--artifact", str(q8), "--no-cache",
                           "-q", "--threads", "1", "--out", str(tmp_path / "out"))
    assert code in (1, 3), err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    row = next(f for f in report["formats"] if f["format"] == "gguf-file:user-Q8_0.gguf")
    assert row["error"] is None and set(row["roles"]) == {"base", "unlearned"}
    assert row["details"]["engine"] == "llama.cpp" and "Q8_0" in row["details"]["tensor_types"]
    assert all(r["error"] is None and r["retain_nll"] > 0 for r in row["roles"].values())


def test_artifact_of_unknown_kind_is_exit_2(pair, tmp_path, monkeypatch, capsys):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a model")
    code, _, err = run_cli(monkeypatch, capsys, "check", str(pair["base"]), str(pair["unlearned"]),
                           "--suite", str(pair["suite"]), "--artifact", str(bogus), "-q")
    assert code == 2 and "unsupported artifact" in err and len(err.strip().splitlines()) == 1
