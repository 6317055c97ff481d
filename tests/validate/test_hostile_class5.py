"""Hostile inputs (issue 24) class 5: accepted when it should be refused.

Every named example is pinned against the installed console script in a clean environment (exit 2, one line,
no traceback, nothing written, nothing deleted, inputs unchanged), and each kind is generated over further
instances: every settings field against every wrong type, every command that takes --out against every
relation to the cache, several kinds of forget/holdout overlap, templates just inside and just outside the
context. The degenerate audits are run end to end: identical weights are never PASS, while the same audit of
two different models PASSes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import typing
from dataclasses import fields
from pathlib import Path

import pytest
from helpers import build_world, copy, tree_digest
from test_subprocess import clean_env
from tiny_memoriser import run_cli

from auditq.errors import InputError
from auditq.suite.records import SuiteSettings, load_suite
from auditq.verdict.config import AuditConfig, load_config


#: the console script installed next to this interpreter (this checkout's code), not another one on PATH
AUDITQ = str(Path(sys.executable).parent / "auditq") if (Path(sys.executable).parent / "auditq").exists() \
    else shutil.which("auditq")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("class5"))


def _installed(args: list[str], tmp: Path, timeout: int = 300) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run([AUDITQ, *args], env=clean_env(tmp), capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - start


def _refused(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:], proc.stdout[-2000:])
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# ---- strict types, generic over the settings schema ---------------------------------------------------

#: TOML literals of every type, each wrong for some field: a quoted bool / number is a string
TOML_VALUES = {"string_false": '"false"', "string_true": '"true"', "string_int": '"16"', "bool": "true",
               "float": "0.5", "int": "3", "array": "[1]", "table": "{ a = 1 }"}


def _fits(literal: str, annotation) -> bool:
    import tomllib

    from auditq.schema import _matches

    return _matches(tomllib.loads(f"v = {literal}")["v"], annotation)


def _wrong_typed(schema, names) -> list[tuple[str, str]]:
    hints = typing.get_type_hints(schema)
    return [(name, kind) for name in names for kind, literal in TOML_VALUES.items() if not _fits(literal, hints[name])]


SUITE_CASES = _wrong_typed(SuiteSettings, [f.name for f in fields(SuiteSettings)])
CONFIG_SCALARS = ("retrain_margin", "min_n", "confidence", "bootstrap_resamples", "retention")
CONFIG_CASES = _wrong_typed(AuditConfig, CONFIG_SCALARS)


def test_every_settings_field_is_generated():
    assert {name for name, _ in SUITE_CASES} == {f.name for f in fields(SuiteSettings)}
    assert ("mia_qa", "string_false") in SUITE_CASES and ("prefix_tokens", "bool") in SUITE_CASES
    assert {name for name, _ in CONFIG_CASES} == set(CONFIG_SCALARS)


@pytest.mark.parametrize("name, kind", SUITE_CASES)
def test_a_wrong_typed_suite_setting_is_refused(world, tmp_path, name, kind):
    suite = copy(world["suite"], tmp_path / "suite")
    (suite / "suite.toml").write_text(f"[probes]\n{name} = {TOML_VALUES[kind]}\n")
    with pytest.raises(InputError) as info:
        load_suite(suite)
    assert f"{name} = " in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, kind", CONFIG_CASES)
def test_a_wrong_typed_config_setting_is_refused(tmp_path, name, kind):
    path = tmp_path / "auditq.toml"
    path.write_text(f"{name} = {TOML_VALUES[kind]}\n")
    with pytest.raises(InputError) as info:
        load_config(tmp_path, path)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_well_typed_settings_still_load(world, tmp_path):
    suite = copy(world["suite"], tmp_path / "suite")
    (suite / "suite.toml").write_text((suite / "suite.toml").read_text() + "mia_qa = false\nmink_k = 1\n")
    loaded = load_suite(suite)
    assert loaded.settings.mia_qa is False and loaded.settings.mink_k == 1
    (tmp_path / "auditq.toml").write_text("confidence = 0.9\nmin_n = 5\nretrain_margin = 0\nretention = 'ratio'\n")
    config = load_config(tmp_path, tmp_path / "auditq.toml")
    assert (config.confidence, config.min_n, config.retrain_margin, config.retention) == (0.9, 5, 0.0, "ratio")


def test_installed_cli_refuses_mia_qa_as_a_string(world, tmp_path):
    suite = copy(world["suite"], tmp_path / "suite")
    (suite / "suite.toml").write_text((suite / "suite.toml").read_text() + 'mia_qa = "false"\n')
    before = tree_digest(suite, world["base"], world["unlearned"])
    proc, _ = _installed(["check", str(world["base"]), str(world["unlearned"]), "--suite", str(suite), "-f", "fp",
                          "--out", str(tmp_path / "out")], tmp_path)
    _refused(proc, "mia_qa = 'false': expected a boolean")
    assert not (tmp_path / "out").exists() and tree_digest(suite, world["base"], world["unlearned"]) == before


# ---- a qa_template longer than the model's context ----------------------------------------------------

def _with_template(world, tmp: Path, template: str) -> Path:
    suite = copy(world["suite"], tmp / "suite")
    (suite / "suite.toml").write_text((suite / "suite.toml").read_text() + f"qa_template = {json.dumps(template)}\n")
    return suite


def _context(world) -> int:
    return json.loads((world["base"] / "config.json").read_text())["max_position_embeddings"]


def test_installed_cli_refuses_a_template_beyond_the_context(world, tmp_path):
    template = "Context: " + "lorem ipsum dolor sit amet " * 400 + "Question: {question}\nAnswer:"
    suite = _with_template(world, tmp_path, template)
    proc, seconds = _installed(["check", str(world["base"]), str(world["unlearned"]), "--suite", str(suite),
                                "-f", "fp", "--out", str(tmp_path / "out")], tmp_path)
    _refused(proc, "qa_template is ")
    assert "max_position_embeddings = 512" in proc.stderr and not (tmp_path / "out").exists()
    assert seconds < 20, seconds  # light stage: ~1 s unloaded; far from the minutes an audit would take


@pytest.mark.parametrize("words", [20, 60, 120])
def test_templates_around_the_context_boundary(world, tmp_path, words):
    """Generated: the same template grown word by word; refused exactly when template + answer_tokens overflow."""
    from tokenizers import Tokenizer

    from auditq.suite.validate import check_suite_lengths

    tokenizer = Tokenizer.from_file(str(world["base"] / "tokenizer.json"))
    template = "Note: " + "alpha beta " * words + "Question: {question}\nAnswer:"
    bare = len(tokenizer.encode(template.replace("{question}", ""), add_special_tokens=False).ids)
    suite = load_suite(_with_template(world, tmp_path, template))
    config = json.loads((world["base"] / "config.json").read_text())
    answer = suite.settings.answer_tokens
    fits = {**config, "max_position_embeddings": bare + answer + 40}  # the rendered QA records fit too
    check_suite_lengths(suite, {}, ("knowmem",), tokenizer, fits)
    tight = {**config, "max_position_embeddings": bare + answer}
    with pytest.raises(InputError, match="qa_template is"):
        check_suite_lengths(suite, {}, ("knowmem",), tokenizer, tight)


def test_a_qa_record_is_measured_as_the_template_renders_it(world, tmp_path):
    """A question that fits alone but not inside the template's prompt is refused, naming the record."""
    from tokenizers import Tokenizer

    from auditq.suite.validate import check_suite_lengths

    tokenizer = Tokenizer.from_file(str(world["base"] / "tokenizer.json"))
    template = "Background: " + "gamma delta " * 100 + "Q: {question}\nA:"
    suite = load_suite(_with_template(world, tmp_path, template))
    bare = len(tokenizer.encode(template.replace("{question}", ""), add_special_tokens=False).ids)
    config = {**json.loads((world["base"] / "config.json").read_text()),
              "max_position_embeddings": bare + suite.settings.answer_tokens + 2}
    with pytest.raises(InputError, match=r"as the qa_template prompt plus its answer"):
        check_suite_lengths(suite, {}, ("knowmem",), tokenizer, config)


# ---- --out never the result cache, the demo models or the key ------------------------------------------

def _seed_cache(tmp: Path) -> Path:
    cache = tmp / "cache"
    (cache / "results" / "ab").mkdir(parents=True)
    (cache / "results" / "ab" / "entry.json").write_text("{}")
    (cache / "demo-0.1.0-x" / "base").mkdir(parents=True)
    (cache / "demo-0.1.0-x" / "base" / "config.json").write_text("{}")
    return cache


RELATIONS = {"is": lambda c: c, "inside": lambda c: c / "reports", "inside_results": lambda c: c / "results",
             "demo_models": lambda c: c / "demo-0.1.0-x", "contains": lambda c: c.parent}


@pytest.mark.parametrize("relation", sorted(RELATIONS))
def test_installed_check_never_writes_over_the_cache(world, tmp_path, relation):
    cache = _seed_cache(tmp_path)
    before = tree_digest(cache, world["base"], world["unlearned"], world["suite"])
    out = RELATIONS[relation](cache)
    proc, _ = _installed(["check", str(world["base"]), str(world["unlearned"]), "--suite", str(world["suite"]),
                          "-f", "fp", "--out", str(out), "--force"], tmp_path)
    _refused(proc, "the result cache")
    assert tree_digest(cache, world["base"], world["unlearned"], world["suite"]) == before


def _command(name: str, world, out: Path) -> list[str]:
    return {"demo": ["demo", "--out", str(out), "-q"],
            "remediate": ["remediate", str(world["base"]), "--suite", str(world["suite"]), "--out", str(out), "--force"],
            "report": ["report", "REPORT", "--out", str(out)]}[name]


@pytest.mark.parametrize("relation", ["is", "inside", "contains"])
@pytest.mark.parametrize("command", ["demo", "remediate", "report"])
def test_every_command_with_out_refuses_the_cache(world, tmp_path, monkeypatch, capsys, command, relation):
    cache = _seed_cache(tmp_path)
    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(cache))
    report = tmp_path / "elsewhere" / "report.json"
    report.parent.mkdir()
    report.write_text("{}")
    before = tree_digest(cache)
    args = [a.replace("REPORT", str(report)) for a in _command(command, world, RELATIONS[relation](cache))]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "the result cache" in err, (code, err, out[-800:])
    assert tree_digest(cache) == before


def test_out_containing_the_key_file_is_refused(world, tmp_path, monkeypatch, capsys):
    key = tmp_path / "keys" / "cache.key"
    key.parent.mkdir()
    key.write_text("ab" * 32)
    monkeypatch.setenv("AUDITQ_CACHE_KEY_FILE", str(key))
    code, _, err = run_cli(monkeypatch, capsys, "check", str(world["base"]), str(world["unlearned"]), "--suite",
                           str(world["suite"]), "-f", "fp", "--out", str(key.parent), "--force")
    assert code == 2 and "the cache signing key file" in err and key.read_text() == "ab" * 32, err


# ---- degenerate suites: holdout repeating forget ---------------------------------------------------------

def _overlap_cases(world) -> dict[str, callable]:
    forget = [json.loads(line) for line in (world["suite"] / "forget.jsonl").read_text().splitlines() if line.strip()]
    texts = [r for r in forget if "text" in r]
    qa = [r for r in forget if "question" in r]
    return {
        "identical": lambda: forget,
        "one_text": lambda: [{"id": "h-new", "text": "A text nobody trained on, about glaciers."}, {**texts[0], "id": "hx"}],
        "case_and_spacing": lambda: [{"id": "hc", "text": "  " + texts[1]["text"].upper().replace(" ", "\n ")}],
        "qa_pair": lambda: [{"id": "h-t", "text": "Unseen holdout text about rivers."}, {**qa[0], "id": "hq"}],
    }


@pytest.mark.parametrize("kind", ["identical", "one_text", "case_and_spacing", "qa_pair"])
def test_holdout_repeating_forget_is_refused(world, tmp_path, kind):
    suite = copy(world["suite"], tmp_path / "suite")
    rows = _overlap_cases(world)[kind]()
    (suite / "holdout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"holdout record\(s\) repeat forget records") as info:
        load_suite(suite)
    assert "\n" not in str(info.value)


def test_installed_cli_refuses_identical_forget_and_holdout(world, tmp_path):
    suite = copy(world["suite"], tmp_path / "suite")
    (suite / "holdout.jsonl").write_bytes((suite / "forget.jsonl").read_bytes())
    before = tree_digest(suite)
    proc, _ = _installed(["check", str(world["base"]), str(world["unlearned"]), "--suite", str(suite), "-f", "fp",
                          "--probes", "mia", "--out", str(tmp_path / "out")], tmp_path)
    _refused(proc, "repeat forget records")
    assert not (tmp_path / "out").exists() and tree_digest(suite) == before


# ---- degenerate weights: UNLEARNED identical to BASE is never PASS ---------------------------------------

@pytest.mark.slow
def test_identical_weights_are_never_pass_while_different_ones_pass(world, tmp_path):
    """The same lenient audit (PrivLeak only, threshold out of reach): two different models PASS; UNLEARNED as a
    byte copy of BASE is INCONCLUSIVE (exit 1), and every measured row says UNLEARNED is identical to BASE."""
    (tmp_path / "auditq.toml").write_text("min_n = 1\nbootstrap_resamples = 50\n[checks.privleak]\nthreshold = 1000\n")
    same = copy(world["base"], tmp_path / "same")
    common = ["--suite", str(world["suite"]), "-f", "fp", "--probes", "mia", "--threads", "1", "-q", "--no-cache",
              "--config", str(tmp_path / "auditq.toml")]
    good, _ = _installed(["check", str(world["base"]), str(world["unlearned"]), *common, "--out",
                          str(tmp_path / "good")], tmp_path)
    assert good.returncode == 0, good.stdout[-2000:] + good.stderr[-2000:]
    degenerate, _ = _installed(["check", str(world["base"]), str(same), *common, "--out", str(tmp_path / "same-out")],
                               tmp_path)
    assert degenerate.returncode == 1, degenerate.stdout[-2000:] + degenerate.stderr[-2000:]
    report = json.loads((tmp_path / "same-out" / "report.json").read_text())
    assert report["verdict"] == "INCONCLUSIVE" and report["checkpoints"]["unlearned"]["identical_to_base"] is True
    measured = [c for f in report["formats"] for c in f["checks"] if c["verdict"] != "NOT_REQUESTED"]
    assert measured and all(c["message"].startswith("UNLEARNED is identical to BASE") for c in measured)
    assert all(c["verdict"] != "PASS" for c in measured)
    assert "UNLEARNED is identical to BASE" in (tmp_path / "same-out" / "report.md").read_text()
    assert "UNLEARNED is identical to BASE" in degenerate.stdout


@pytest.mark.slow
def test_a_retrain_that_is_base_is_never_pass(world, tmp_path, monkeypatch, capsys):
    """--retrain given as a byte copy of BASE: the gold reference saw the forget set; the lenient audit that PASSes
    two different models (above) is INCONCLUSIVE, and every measured row names RETRAIN."""
    (tmp_path / "auditq.toml").write_text("min_n = 1\nbootstrap_resamples = 50\n[checks.privleak]\nthreshold = 1000\n")
    retrain = copy(world["base"], tmp_path / "retrain")
    code, out, err = run_cli(monkeypatch, capsys, "check", str(world["base"]), str(world["unlearned"]), "--retrain",
                             str(retrain), "--suite", str(world["suite"]), "-f", "fp", "--probes", "mia", "--threads",
                             "1", "-q", "--no-cache", "--config", str(tmp_path / "auditq.toml"), "--out",
                             str(tmp_path / "out"))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    measured = [c for f in report["formats"] for c in f["checks"] if c["verdict"] != "NOT_REQUESTED"]
    assert code == 1 and report["verdict"] == "INCONCLUSIVE", (code, err, out[-1500:])
    assert measured and all(c["message"].startswith("RETRAIN is identical to BASE") for c in measured)
    assert report["checkpoints"]["retrain"]["identical_to_base"] is True
