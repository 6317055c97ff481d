"""-f presets: paper-code (the paper's public code: bitsandbytes LLM.int8 and FP4) and paper-text (its RTN)."""

from __future__ import annotations

import json

import pytest
from suite_files import write_suite
from tiny_memoriser import run_cli

from auditq.errors import InputError
from auditq.formats import PRESETS, expand_presets, parse_format


def test_presets_expand_to_exactly_their_formats():
    assert expand_presets(["paper-code"]) == ("fp", "bnb:int8", "bnb:fp4")
    assert expand_presets(["paper-text"]) == ("fp", "rtn8", "rtn4")
    assert expand_presets(["PAPER-CODE "]) == ("fp", "bnb:int8", "bnb:fp4")
    # mixed with formats: order kept, a format a preset brings is not added twice
    assert expand_presets(["fp", "paper-code", "gguf:q4_0"]) == ("fp", "bnb:int8", "bnb:fp4", "gguf:q4_0")
    assert expand_presets(["paper-code", "fp"]) == ("fp", "bnb:int8", "bnb:fp4")
    assert expand_presets(["paper-text", "paper-code"]) == ("fp", "rtn8", "rtn4", "bnb:int8", "bnb:fp4")
    assert expand_presets(["rtn4", "rtn4"]) == ("rtn4", "rtn4")  # explicit duplicates stay for the validator
    for name, formats in PRESETS.items():  # every preset names formats the parser accepts
        assert [parse_format(f).spec.raw for f in formats] == list(formats)
        with pytest.raises(InputError, match="is a format preset"):  # a parser that does not expand presets says so
            parse_format(name)


@pytest.mark.parametrize("typo", ["paper-cod", "paper-txt", "papercode-x", "paper-code-4bit", "Paper-Texts"])
def test_a_mistyped_preset_is_refused_in_one_line(typo):
    with pytest.raises(InputError, match="unknown format preset") as info:
        expand_presets(["fp", typo])
    assert "paper-code" in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from gguf_helpers import build_llama_checkpoint

    root = tmp_path_factory.mktemp("presets")
    base = build_llama_checkpoint(root / "base", hidden=64, intermediate=128, seed=0)
    unlearned = build_llama_checkpoint(root / "unlearned", hidden=64, intermediate=128, seed=1)
    texts = [{"id": f"t{i}", "text": f"The quick brown fox number {i} jumps over the lazy dog in Warsaw."}
             for i in range(6)]
    suite = write_suite(root / "suite", forget=texts[:3], retain=texts[3:], holdout=texts[3:],
                        toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 4\nanswer_tokens = 3\n")
    return base, unlearned, suite


def test_cli_refuses_a_mistyped_preset_before_any_work(pair, monkeypatch, capsys):
    base, unlearned, suite = pair
    code, _, err = run_cli(monkeypatch, capsys, "check", str(base), str(unlearned), "--suite", str(suite),
                           "-f", "paper-cod", "--probes", "mia", "--no-cache", "-q")
    assert code == 2 and "unknown format preset 'paper-cod'" in err and len(err.strip().splitlines()) == 1


def test_paper_code_audit_has_the_bnb_rows(pair, tmp_path, monkeypatch, capsys):
    pytest.importorskip("bitsandbytes")
    base, unlearned, suite = pair
    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(tmp_path / "cache"))
    code, _, err = run_cli(monkeypatch, capsys, "check", str(base), str(unlearned), "--suite", str(suite),
                           "-f", "paper-code", "--probes", "mia", "--threads", "1", "-q", "--out", str(tmp_path / "out"))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert code in (0, 1), err  # random models: PrivLeak decides; never a row that failed to measure (3)
    assert [f["format"] for f in report["formats"]] == ["fp", "bnb:int8", "bnb:fp4"]
    assert report["arguments"]["formats"] == ["fp", "bnb:int8", "bnb:fp4"]
    assert all(f["error"] is None for f in report["formats"])
    rows = {f["format"]: f["details"] for f in report["formats"]}
    assert rows["bnb:fp4"]["quant_type"] == "fp4" and rows["bnb:fp4"].get("blocksize") == 64
    assert "lm_head" in rows["bnb:fp4"]["full_precision_linears"]  # load_in_4bit skips the head, as the paper's code
    assert rows["bnb:int8"]["quant_type"] == "int8" and rows["bnb:int8"].get("outlier_threshold") == 6.0
