"""Hostile inputs (issue 24): deep nesting in every JSON / TOML auditq parses (class 3), raw line separators
inside JSONL strings (class 6), weak or unreadable cache keys (class 7). Each class is generated over several
instances, not only the example that found it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import build_world, copy, weights
from tiny_memoriser import run_cli

from auditq.cache.key import MIN_KEY_BYTES, signing_key
from auditq.errors import InputError
from auditq.safe_parse import MAX_DEPTH, loads_json, loads_toml
from auditq.suite.records import load_suite

DEPTHS = (MAX_DEPTH + 1, 5_000, 200_000)
JSON_SHAPES = {"array": ("[", "]"), "object": ('{"a":', "}"), "mixed": ('[{"a":', "}]")}
TOML_SHAPES = {"array": ("[", "]"), "inline_table": ("{b=", "}"), "mixed": ("[{b=", "}]")}


def deep_json(shape: str, depth: int) -> str:
    opening, closing = JSON_SHAPES[shape]
    return opening * depth + "1" + closing * depth


def deep_toml(shape: str, depth: int) -> str:
    opening, closing = TOML_SHAPES[shape]
    return "deep = " + opening * depth + "1" + closing * depth + "\n"


# ---- class 3: deep nesting -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", sorted(JSON_SHAPES))
@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_json_is_one_input_error_naming_the_file(shape, depth):
    with pytest.raises(InputError, match=r"^some\.json: JSON nested .* refused$"):
        loads_json('{"ok": ' + deep_json(shape, depth) + "}", "some.json")


@pytest.mark.parametrize("shape", sorted(TOML_SHAPES))
@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_toml_is_one_input_error_naming_the_file(shape, depth):
    with pytest.raises(InputError, match=r"^x\.toml: TOML nested .* refused$"):
        loads_toml(deep_toml(shape, depth), "x.toml")


def test_brackets_inside_strings_and_comments_do_not_count():
    text = '{"a": "' + "[" * 5000 + '", "b": [1, 2]}'
    assert loads_json(text, "s.json")["b"] == [1, 2]
    assert loads_toml('a = "' + "[" * 5000 + '"\n# ' + "{" * 5000 + "\nb = '" + "[" * 300 + "'\n", "s.toml")["a"]
    assert loads_json(deep_json("array", MAX_DEPTH - 1), "ok.json")  # at the limit: parsed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("hostile"))


def _deep_config(case):
    config = json.loads((case["unlearned"] / "config.json").read_text())
    text = json.dumps(config)[:-1] + ', "deep": ' + deep_json("object", 50_000) + "}"
    (case["unlearned"] / "config.json").write_text(text)


def _deep_header(case):
    raw = weights(case["base"]).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].decode()
    text = ('{"__deep__": ' + deep_json("array", 20_000) + ", " + header[1:]).encode()
    weights(case["base"]).write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def _deep_jsonl(case):
    with (case["suite"] / "forget.jsonl").open("a") as handle:
        handle.write('{"id": "deep", "text": "x", "nested": ' + deep_json("mixed", 30_000) + "}\n")


def _deep_config_flag(case):
    (case["tmp"] / "auditq.toml").write_text(deep_toml("array", 20_000))
    return ["--config", str(case["tmp"] / "auditq.toml")]


def _deep_waivers(case):
    (case["tmp"] / "waivers.toml").write_text(deep_toml("inline_table", 20_000))
    return ["--waivers", str(case["tmp"] / "waivers.toml")]


def _deep_out(case):
    case["out"].mkdir()
    (case["out"] / "report.json").write_text('{"schema_version": ' + deep_json("array", 100_000) + "}")
    return []


DEEP_CASES = {  # name: (break the copy, expected text on stderr)
    "config_json": (_deep_config, "config.json"),
    "safetensors_header": (_deep_header, "safetensors header"),
    "suite_toml": (lambda c: (c["suite"] / "suite.toml").write_text(deep_toml("mixed", 20_000)), "suite.toml"),
    "jsonl_record": (_deep_jsonl, "forget.jsonl:"),
    "config_flag": (_deep_config_flag, "auditq.toml"),
    "waivers_flag": (_deep_waivers, "waivers.toml"),
    "existing_out": (_deep_out, "pass --force"),  # not recognisably auditq's: never replaced
}


@pytest.mark.parametrize("name", sorted(DEEP_CASES))
def test_deep_nesting_in_every_input_exits_2_in_one_line(world, tmp_path, monkeypatch, capsys, name):
    case = {"tmp": tmp_path, "out": tmp_path / "out", "base": copy(world["base"], tmp_path / "base"),
            "unlearned": copy(world["unlearned"], tmp_path / "unlearned"), "suite": copy(world["suite"], tmp_path / "suite")}
    make, expected = DEEP_CASES[name]
    extra = make(case)
    extra = extra if isinstance(extra, list) else []  # a make that only breaks a file returns no flags
    code, out, err = run_cli(monkeypatch, capsys, "check", str(case["base"]), str(case["unlearned"]), "--suite",
                             str(case["suite"]), "-f", "fp", "--probes", "mia", "-q", "--threads", "1", "--no-cache",
                             "--out", str(case["out"]), *extra)
    assert code == 2, (code, err, out[-1500:])
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out and "Recursion" not in err
    assert expected in err, err


@pytest.mark.parametrize("shape", sorted(JSON_SHAPES))
def test_auditq_report_refuses_a_deep_report_json(tmp_path, monkeypatch, capsys, shape):
    path = tmp_path / "report.json"
    path.write_text('{"schema_version": "1.3", "formats": ' + deep_json(shape, 100_000) + "}")
    code, _, err = run_cli(monkeypatch, capsys, "report", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "report.json" in err, err


def test_a_deep_cache_entry_is_dropped_not_fatal(tmp_path):
    """A cache entry is damaged input the audit recovers from: dropped (a miss), never an exit 2 or 3."""
    from auditq.cache.store import ResultCache

    cache = ResultCache(tmp_path / "results")
    key = "ab" + "0" * 62
    entry = cache._path(key)
    entry.parent.mkdir(parents=True)
    for shape in JSON_SHAPES:
        entry.write_text('{"cache_format": ' + deep_json(shape, 100_000) + "}")
        assert cache.get(key) is None and not entry.exists()


# ---- class 6: line separators inside JSON strings ---------------------------------------------------

SEPARATORS = ("\u2028", "\u2029", "\x85")  # valid raw inside a JSON string; str.splitlines() splits on them


@pytest.mark.parametrize("sep", SEPARATORS, ids=["U+2028", "U+2029", "U+0085"])
def test_raw_line_separators_inside_jsonl_strings_keep_the_record_whole(world, tmp_path, sep):
    suite = copy(world["suite"], tmp_path / "suite")
    texts = [f"{sep}starts with it", f"in the{sep}middle", f"ends with it{sep}", f"two{sep}{sep}in a row"]
    rows = [{"id": f"s{i}", "text": t} for i, t in enumerate(texts)]
    rows.append({"id": f"q{sep}", "question": f"Where{sep}?", "answer": f"Here{sep}"})
    (suite / "forget.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (suite / "calibration.txt").write_text(f"one{sep}sample\r\nanother\n", encoding="utf-8")
    toml = (suite / "suite.toml").read_text()
    (suite / "suite.toml").write_text(toml.replace("[probes]\n", '[probes]\ncalibration = "calibration.txt"\n'))
    loaded = load_suite(suite)
    assert [r.text for r in loaded.forget.texts] == texts
    assert [(r.id, r.question, r.answer) for r in loaded.forget.qa] == [(f"q{sep}", f"Where{sep}?", f"Here{sep}")]
    assert loaded.calibration_texts() == (f"one{sep}sample", "another")


# ---- class 7: the cache's signing key ---------------------------------------------------------------

def _key_file_cases(tmp: Path) -> dict[str, Path]:
    cases = {}
    for name, content in {"newline": "\n", "empty": "", "spaces": "   \n", "one_byte": "00\n",
                          "fifteen_bytes": "ab" * (MIN_KEY_BYTES - 1), "not_hex": "zz" * 32,
                          "odd_hex": "a" * 33}.items():
        cases[name] = tmp / f"{name}.key"
        cases[name].write_text(content)
    cases["directory"] = tmp / "dir.key"
    cases["directory"].mkdir()
    cases["not_ascii"] = tmp / "bin.key"
    cases["not_ascii"].write_bytes(b"\xff\xfe" * 20)
    cases["dangling_link"] = tmp / "link.key"
    cases["dangling_link"].symlink_to(tmp / "nowhere")
    for name, content in {"crlf_only": "\r\n", "tabs_and_spaces": "\t \t\n",
                          "padded_fifteen_bytes": "  " + "cd" * (MIN_KEY_BYTES - 1) + " \n\n"}.items():
        cases[name] = tmp / f"{name}.key"
        cases[name].write_bytes(content.encode())
    cases["symlink_loop"] = tmp / "loop-a.key"
    cases["symlink_loop"].symlink_to(tmp / "loop-b.key")
    (tmp / "loop-b.key").symlink_to(cases["symlink_loop"])
    cases["unreadable"] = Path("/proc/self/mem")  # a regular file whose read fails (EIO) even for root
    return cases


def test_bad_key_files_are_refused_not_replaced(tmp_path, monkeypatch):
    for name, path in _key_file_cases(tmp_path).items():
        monkeypatch.setenv("AUDITQ_CACHE_KEY_FILE", str(path))
        monkeypatch.delenv("AUDITQ_CACHE_KEY", raising=False)
        with pytest.raises(InputError, match="cache key file") as info:
            signing_key(tmp_path / "cache")
        assert "\n" not in str(info.value), name
    good = tmp_path / "good.key"
    good.write_text("ab" * MIN_KEY_BYTES + "\n")
    monkeypatch.setenv("AUDITQ_CACHE_KEY_FILE", str(good))
    assert signing_key(tmp_path / "cache") == bytes.fromhex("ab" * MIN_KEY_BYTES)
    fresh = tmp_path / "sub" / "fresh.key"  # none yet: created once, 32 bytes, reused
    monkeypatch.setenv("AUDITQ_CACHE_KEY_FILE", str(fresh))
    assert len(signing_key(tmp_path / "cache")) == 32 and signing_key(tmp_path / "cache") == bytes.fromhex(fresh.read_text())


@pytest.mark.parametrize("secret", ["a", " ", "\n", "x" * (MIN_KEY_BYTES - 1), " " * 20 + "short"])
def test_short_secrets_are_refused(tmp_path, monkeypatch, secret):
    monkeypatch.setenv("AUDITQ_CACHE_KEY", secret)
    with pytest.raises(InputError, match="AUDITQ_CACHE_KEY"):
        signing_key(tmp_path / "cache")


@pytest.mark.parametrize("name", ["newline", "directory", "fifteen_bytes", "unreadable", "symlink_loop"])
def test_cli_refuses_a_bad_key_before_any_work(world, tmp_path, monkeypatch, capsys, name):
    monkeypatch.delenv("AUDITQ_CACHE_KEY", raising=False)
    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDITQ_CACHE_KEY_FILE", str(_key_file_cases(tmp_path)[name]))
    code, out, err = run_cli(monkeypatch, capsys, "check", str(world["base"]), str(world["unlearned"]), "--suite",
                             str(world["suite"]), "-f", "fp", "--probes", "mia", "--threads", "1",
                             "--out", str(tmp_path / "out"))  # no -q: the refusal comes before any other line
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cache key file" in err, err
    assert not (tmp_path / "out").exists() and not os.path.exists(tmp_path / "cache" / "results")


# ---- further generated instances (issue 24 "fix the class, not the example") --------------------------

def _random_deep(rng, depth: int, toml: bool) -> str:
    """A random mix of arrays and tables/objects `depth` levels deep, closed in the right order."""
    openers = [("[", "]"), ("{b=", "}")] if toml else [("[", "]"), ('{"k":', "}"), ('[0, {"k": "[", "v":', "}]")]
    chosen = [rng.choice(openers) for _ in range(depth)]
    body = "".join(o for o, _ in chosen) + "1" + "".join(c for _, c in reversed(chosen))
    return ("deep = " + body + "\n") if toml else body


@pytest.mark.parametrize("seed", range(6))
def test_random_deep_documents_are_refused_and_shallow_ones_parse(seed):
    import random

    rng = random.Random(seed)
    for toml in (False, True):
        depth = rng.choice([MAX_DEPTH + 1, rng.randint(MAX_DEPTH + 2, 3_000), rng.randint(3_000, 60_000)])
        loads = loads_toml if toml else loads_json
        with pytest.raises(InputError, match="nested"):
            loads(_random_deep(rng, depth, toml), "gen")
        assert loads(_random_deep(rng, rng.randint(1, MAX_DEPTH // 2 - 1), toml), "gen")  # within the limit: parsed


SIDE_FILES = ("tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "added_tokens.json",
              "tokenizer.json", "model.safetensors.index.json")


@pytest.mark.parametrize("name", SIDE_FILES)
def test_deep_json_beside_the_weights_exits_2_in_one_line(world, tmp_path, monkeypatch, capsys, name):
    """Every JSON file of a checkpoint dir, not only config.json: each is parsed (guarded) in the light stage."""
    import random

    unlearned = copy(world["unlearned"], tmp_path / "unlearned")
    body = _random_deep(random.Random(name), 40_000, toml=False)
    (unlearned / name).write_text('{"deep": ' + body + "}")
    code, out, err = run_cli(monkeypatch, capsys, "check", str(world["base"]), str(unlearned), "--suite",
                             str(world["suite"]), "-f", "fp", "--probes", "mia", "-q", "--no-cache",
                             "--out", str(tmp_path / "out"))
    assert code == 2, (code, err, out[-1500:])
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out and "Recursion" not in err
    assert name in err and not (tmp_path / "out").exists(), err


@pytest.mark.slow
def test_deep_cache_entries_are_dropped_and_the_audit_completes(world, tmp_path, monkeypatch, capsys):
    """Every entry of a real audit's cache rewritten as a deep document: the next audit drops them, re-measures,
    and ends as the first one did (never exit 2 or 3 because of the cache)."""
    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(tmp_path / "cache"))
    args = ["check", str(world["base"]), str(world["unlearned"]), "--suite", str(world["suite"]), "-f", "fp",
            "--probes", "mia", "-q", "--threads", "1"]
    first, _, _ = run_cli(monkeypatch, capsys, *args, "--out", str(tmp_path / "one"))
    entries = sorted((tmp_path / "cache" / "results").rglob("*.json"))
    assert entries and first in (0, 1)
    for index, entry in enumerate(entries):
        entry.write_text('{"cache_format": ' + deep_json(sorted(JSON_SHAPES)[index % 3], 100_000) + "}")
    second, out, err = run_cli(monkeypatch, capsys, *args, "--out", str(tmp_path / "two"))
    assert second == first, (second, err, out[-1500:])
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["verdict"] == json.loads((tmp_path / "one" / "report.json").read_text())["verdict"]
    assert "Recursion" not in err + out and "Traceback" not in err + out


@pytest.mark.parametrize("seed", range(3))
def test_generated_separator_placements_keep_records_and_calibration_lines_whole(world, tmp_path, seed):
    """Class 6, generated: the JSON-valid separators at random places in every string field of a record, and in
    a --calibration file (read by auditq.audit.request.read_calibration)."""
    import random

    from auditq.audit.request import read_calibration

    rng = random.Random(seed)

    def sprinkle(text: str) -> str:
        cut = rng.randint(0, len(text))
        return text[:cut] + "".join(rng.choice(SEPARATORS) for _ in range(rng.randint(1, 3))) + text[cut:]

    suite = copy(world["suite"], tmp_path / "suite")
    rows = [{"id": sprinkle(f"t{i}"), "text": sprinkle("Forget text number %d about glaciers." % i)} for i in range(4)]
    rows += [{"id": sprinkle("q"), "question": sprinkle("Where is it?"), "answer": sprinkle("Far away")}]
    (suite / "forget.jsonl").write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                                        encoding="utf-8")
    loaded = load_suite(suite)
    assert [r.text for r in loaded.forget.texts] == [r["text"] for r in rows[:4]]
    assert loaded.forget.qa[0].answer == rows[4]["answer"]
    samples = [sprinkle(f"calibration sample {i}") for i in range(5)]
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("\n".join(samples) + "\n", encoding="utf-8")
    assert read_calibration(str(calibration)) == tuple(samples)
