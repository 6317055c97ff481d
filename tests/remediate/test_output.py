"""Output safety: --out checks, staging + rename, and a crash mid-write leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from auditq.checkpoint.load import fingerprint, load_checkpoint
from auditq.errors import InputError
from auditq.remediate.output import (
    RECORD_NAME,
    STAGING_PREFIX,
    check_out_dir,
    commit,
    save_checkpoint,
    staged_dir,
    weight_diff,
    write_record,
)


def test_out_dir_rules(tmp_path, tiny):
    base, suite = tiny["base"], tiny["suite"]
    check_out_dir(tmp_path / "new", [base, suite], force=False)  # absent: fine
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", [base, suite], force=False)  # empty: fine
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not empty.*--force"):
        check_out_dir(tmp_path / "full", [base, suite], force=False)
    check_out_dir(tmp_path / "full", [base, suite], force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        check_out_dir(tmp_path / "file", [base], force=True)
    for bad in (base, base / "sub", suite, base.parent):  # never into, inside, or around an input — even with --force
        with pytest.raises(InputError, match="overlaps the input"):
            check_out_dir(bad, [base, suite], force=True)


def test_staged_dir_commits_by_rename(tmp_path):
    out = tmp_path / "out"
    with staged_dir(out) as stage:
        assert stage.parent == tmp_path and stage.name.startswith(STAGING_PREFIX)
        (stage / "a.txt").write_text("a")
        assert not out.exists()  # nothing at --out until the rename
        commit(stage, out)
    assert (out / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_force_replaces_only_after_the_new_dir_is_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_dir(out) as stage:
            (stage / "new.txt").write_text("new")
            raise RuntimeError("crash before commit")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]  # the old one is untouched
    with staged_dir(out) as stage:
        (stage / "new.txt").write_text("new")
        commit(stage, out)
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_crash_mid_write_leaves_no_checkpoint(tmp_path, tiny, monkeypatch, error):
    ckpt = load_checkpoint(tiny["base"], "base")
    out = tmp_path / "new"

    def half_write(self, directory, **kwargs):
        (Path(directory) / "model.safetensors").write_bytes(b"\0" * 100)  # a truncated file
        raise error("killed mid-write")

    monkeypatch.setattr(type(ckpt.model), "save_pretrained", half_write)
    with pytest.raises(error):
        with staged_dir(out) as stage:
            save_checkpoint(ckpt.model, ckpt.tokenizer, tiny["base"], stage)
            commit(stage, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging dir left either


def test_saved_checkpoint_loads_and_matches_bit_for_bit(tmp_path, tiny):
    before = fingerprint(tiny["base"])
    ckpt = load_checkpoint(tiny["base"], "base")
    with torch.no_grad():
        ckpt.model.lm_head.weight[0, 0] += 1.0
    with staged_dir(tmp_path / "new") as stage:
        save_checkpoint(ckpt.model, ckpt.tokenizer, tiny["base"], stage)
        write_record(stage, {"method": "sure"})
        final = commit(stage, tmp_path / "new")
    assert json.loads((final / RECORD_NAME).read_text()) == {"method": "sure"}
    for name in ("tokenizer.json", "tokenizer_config.json"):  # tokenizer files copied byte for byte
        assert (final / name).read_bytes() == (tiny["base"] / name).read_bytes()
    diff = weight_diff(tiny["base"], final)
    assert diff.changed == {"lm_head.weight": 1} and not diff.missing and not diff.extra
    load_checkpoint(final, "unlearned")  # a normal checkpoint auditq (and transformers) can load
    assert fingerprint(tiny["base"]) == before
