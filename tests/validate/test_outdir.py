"""Issue 11 finding 3: --out is a fresh, complete directory (no stale files, umask honoured) and never an input;
`auditq report` refuses a report.json with wrong types (exit 2, not an internal error)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from helpers import build_world
from tiny_memoriser import run_cli


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world-out"))


def _check(world, out, *extra):
    return ["check", str(world["base"]), str(world["unlearned"]), "--suite", str(world["suite"]), "-f", "fp",
            "-q", "--threads", "1", "--probes", "verbmem,mia", "--out", str(out), *extra]


def test_existing_out_is_replaced_as_a_whole_with_the_umask(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, *_check(world, out, "--format", "sarif,html"))
    assert code in (1, 3), err and (out / "report.sarif").is_file()
    old = os.umask(0o027)
    try:
        code, _, err = run_cli(monkeypatch, capsys, *_check(world, out))  # an earlier auditq output: no --force needed
    finally:
        os.umask(old)
    assert code in (1, 3), err
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "report.json", "report.md", "samples.jsonl"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o750  # 0777 & ~umask, not mkdtemp's 0700
    assert stat.S_IMODE((out / "report.json").stat().st_mode) == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_foreign_directory_needs_force_and_is_then_replaced(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me?")
    code, _, err = run_cli(monkeypatch, capsys, *_check(world, out))
    assert code == 2 and "--force" in err and (out / "notes.txt").is_file()
    code, _, err = run_cli(monkeypatch, capsys, *_check(world, out, "--force"))
    assert code in (1, 3) and not (out / "notes.txt").exists() and (out / "report.json").is_file()


@pytest.mark.parametrize("field, value", [("value", "high"), ("n", "many"), ("verdict", 5), ("threshold", [1])])
def test_report_json_with_wrong_types_is_exit_2(world, tmp_path, monkeypatch, capsys, field, value):
    out = tmp_path / "out"
    run_cli(monkeypatch, capsys, *_check(world, out))
    data = json.loads((out / "report.json").read_text())
    data["formats"][0]["checks"][0][field] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    code, _, err = run_cli(monkeypatch, capsys, "report", str(bad), "--out", str(tmp_path / "rendered"))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and field in err and not (tmp_path / "rendered").exists()
