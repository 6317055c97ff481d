"""`auditq remediate` end to end on a tiny random checkpoint: --dry-run, --out refusal, the written
checkpoint and its record, and no NEW_DIR after a crash. (The demo-scale PASS is test_demo_remediate.py.)"""

from __future__ import annotations

import json
import sys

import pytest
from tiny_memoriser import run_cli

from auditq.checkpoint.load import fingerprint, load_checkpoint
from auditq.cli.app import main
from auditq.remediate.output import RECORD_NAME, weight_diff


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "auditq-cache" not in p.parts)


def common(tiny):
    return [str(tiny["base"]), "--suite", str(tiny["suite"]), "--threads", "1", "--quiet"]


def test_dry_run_prints_saliency_and_plan_and_writes_nothing(tiny, tmp_path, monkeypatch, capsys):
    before_inputs = fingerprint(tiny["base"])
    before = tree(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "remediate", *common(tiny), "--out", str(tmp_path / "new"),
                             "--dry-run", "--percentile", "80")
    assert code == 0, err
    assert "saliency" in out and "γ = p80" in out and "plan" in out and "--dry-run" in out
    assert "lm_head" in out or "layers." in out
    assert tree(tmp_path) == before and not (tmp_path / "new").exists()
    assert fingerprint(tiny["base"]) == before_inputs


def test_refuses_a_non_empty_out_without_force(tiny, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "new"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine")
    code, out, err = run_cli(monkeypatch, capsys, "remediate", *common(tiny), "--out", str(out_dir))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "not empty" in err and "--force" in err
    assert (out_dir / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("where", ["base", "inside-base", "suite"])
def test_refuses_to_write_into_an_input_even_with_force(tiny, monkeypatch, capsys, where):
    target = {"base": tiny["base"], "inside-base": tiny["base"] / "remediated", "suite": tiny["suite"]}[where]
    before = fingerprint(tiny["base"])
    code, _, err = run_cli(monkeypatch, capsys, "remediate", *common(tiny), "--out", str(target), "--force")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "overlaps the input" in err
    assert fingerprint(tiny["base"]) == before and not (tiny["base"] / "remediated").exists()


@pytest.mark.parametrize("flags", [["--method", "sgd"], ["--granularity", "layer"], ["--preset", "huge"],
                                   ["--forget-loss", "kl"], ["--lr", "0"]])
def test_bad_options_are_input_errors(tiny, tmp_path, monkeypatch, capsys, flags):
    code, _, err = run_cli(monkeypatch, capsys, "remediate", *common(tiny), "--out", str(tmp_path / "n"), *flags)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "n").exists()


def test_writes_checkpoint_record_and_recheck(tiny, tmp_path, monkeypatch, capsys):
    before = fingerprint(tiny["base"])
    new = tmp_path / "new"
    code, out, err = run_cli(monkeypatch, capsys, "remediate", *common(tiny), "--out", str(new), "--steps", "3",
                             "--lr", "1e-2", "--percentile", "75", "-f", "fp,rtn4")
    record = json.loads((new / RECORD_NAME).read_text())
    # a random model memorises nothing: the re-check cannot PASS, and the exit code is the re-check's
    assert code == record["recheck"]["exit_code"] != 0
    assert record["recheck"]["verdict"] in ("FAIL", "INCONCLUSIVE", "UNKNOWN")
    assert set(record["recheck"]["checks"]) == {"fp", "rtn4"}
    assert (new / "auditq-recheck" / "report.json").is_file()
    assert record["method"] == "sure" and record["seed"] == 0 and record["training"]["steps"] == 3
    assert record["hyperparameters"]["lr"] == 1e-2 and record["hyperparameters"]["percentile"] == 75
    assert record["base"]["files_sha256"] == before
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in new.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging dir left
    # only the masked modules changed, bit for bit, and the record says which
    diff = weight_diff(tiny["base"], new)
    assert set(diff.changed) == set(record["mask"]["modules"]) == set(record["changed"]["tensors"])
    assert diff.changed_entries == record["changed"]["parameters"] == record["mask"]["trainable_parameters"]
    assert "changed" in out and "bit-identical" in out
    load_checkpoint(new, "unlearned")
    assert fingerprint(tiny["base"]) == before
    # a second run into the now non-empty NEW_DIR needs --force, and then replaces it
    code2, _, err2 = run_cli(monkeypatch, capsys, "remediate", *common(tiny), "--out", str(new), "--steps", "1",
                             "-f", "fp")
    assert code2 == 2 and "--force" in err2
    run_cli(monkeypatch, capsys, "remediate", *common(tiny), "--out", str(new), "--steps", "1", "-f", "fp", "--force")
    assert json.loads((new / RECORD_NAME).read_text())["training"]["steps"] == 1


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_crash_during_the_recheck_leaves_no_new_dir(tiny, tmp_path, monkeypatch, capsys, error):
    import auditq.audit.check

    def crash(*args, **kwargs):
        raise error("interrupted during the re-check")

    monkeypatch.setattr(auditq.audit.check, "run_check_audit", crash)  # the audit core the re-check calls
    monkeypatch.setattr(sys, "argv", ["auditq", "remediate", *common(tiny), "--out", str(tmp_path / "new"),
                                      "--steps", "1", "-f", "fp"])
    with pytest.raises((SystemExit, KeyboardInterrupt)) as info:  # click turns Ctrl-C into "Aborted!", exit 1
        main()
    if error is RuntimeError:
        assert info.value.code == 3
    assert not (tmp_path / "new").exists()
    assert tree(tmp_path) == []


def test_row_granularity_changes_only_the_selected_rows_on_disk(tiny, tmp_path, monkeypatch, capsys):
    from auditq.remediate.output import read_tensors

    new = tmp_path / "rows"
    run_cli(monkeypatch, capsys, "remediate", *common(tiny), "--out", str(new), "--steps", "2", "--lr", "1e-2",
            "--granularity", "row", "--percentile", "95", "-f", "fp")
    record = json.loads((new / RECORD_NAME).read_text())
    assert record["mask"]["granularity"] == "row"
    base, after = read_tensors(tiny["base"]), read_tensors(new)
    changed_rows = 0
    for name, tensor in base.items():
        if tensor.dim() != 2:
            assert tensor.equal(after[name]), name
            continue
        differs = (tensor != after[name]).any(dim=1)
        allowed = record["mask"]["rows"].get(name, 0)
        assert int(differs.sum()) <= allowed, name  # only selected rows may differ
        changed_rows += int(differs.sum())
    assert 0 < changed_rows <= sum(record["mask"]["rows"].values())
    assert sum(record["mask"]["rows"].values()) < sum(t.shape[0] for t in base.values() if t.dim() == 2) * 0.1
