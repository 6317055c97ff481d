"""A GPT-2 pair audited end to end: rtn4 and fp8 rows are measured on quantized Conv1D weights, and a
transformation that changes nothing gives an UNKNOWN row with the reason, never a measured one.

The last test runs the installed `auditq check` in a subprocess with a clean environment (PATH, HOME,
LANG only), as a CI runner would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from formats.gguf_helpers import CORPUS, PARITY_TEXTS, build_gpt2_checkpoint  # noqa: E402


def _write_suite(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    long = [" ".join(CORPUS[(i + k) % len(CORPUS)] for k in range(3)) for i in range(len(CORPUS))]  # > 32 tokens
    forget = [{"id": f"f{i}", "text": t} for i, t in enumerate(long[:4])]
    forget += [{"id": "q0", "question": "Where was Marie Curie born?", "answer": "Warsaw"}]
    holdout = [{"id": f"h{i}", "text": f"{t} {long[4 + i]}"} for i, t in enumerate(PARITY_TEXTS[8:] + CORPUS[6:7])]
    holdout += [{"id": "hq0", "question": "Where did Alan Turing work?", "answer": "Bletchley Park"}]
    retain = [{"id": f"r{i}", "text": t} for i, t in enumerate(long[4:8])]
    for name, records in (("forget", forget), ("holdout", holdout), ("retain", retain)):
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (root / "calibration.txt").write_text("\n".join(CORPUS) + "\n")
    return root


@pytest.fixture(scope="module")
def gpt2_pair(tmp_path_factory):
    """BASE (random GPT-2) and UNLEARNED (BASE with noise on one Conv1D weight), saved as safetensors."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("gpt2_pair")
    base = build_gpt2_checkpoint(root / "base")
    unlearned = Path(shutil.copytree(base, root / "unlearned"))
    tensors = load_file(str(unlearned / "model.safetensors"))
    name = "transformer.h.0.mlp.c_fc.weight"
    noise = torch.randn(tensors[name].shape, generator=torch.Generator().manual_seed(0))
    tensors[name] = tensors[name] + 0.3 * tensors[name].std() * noise  # (a pure rescale would keep every RTN code)
    save_file(tensors, str(unlearned / "model.safetensors"), metadata={"format": "pt"})
    return base, unlearned, _write_suite(root / "suite")


def _prepruned(src: Path, dst: Path) -> Path:
    """A copy of `src` whose Conv1D weights are 2:4-sparse along their input already (prune:2:4 changes nothing)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    for name, w in tensors.items():
        if name.startswith("transformer.h.") and w.dim() == 2:
            t = w.t().contiguous()  # (out, in): groups of 4 consecutive inputs
            groups = t.reshape(t.shape[0], -1, 4)
            idx = groups.abs().argsort(dim=-1, stable=True)[..., :2]
            groups = groups.scatter(-1, idx, 0.0)
            tensors[name] = groups.reshape(t.shape).t().contiguous()
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_a_transformation_that_changes_nothing_is_an_unknown_row(gpt2_pair, tmp_path):
    from auditq.audit.pipeline import AuditRequest, run_audit

    torch.set_num_threads(1)
    base, unlearned, suite = gpt2_pair
    base2 = _prepruned(base, tmp_path / "base")
    unl2 = _prepruned(unlearned, tmp_path / "unlearned")
    request = AuditRequest(base=base2, unlearned=unl2, suite=suite, formats=("fp", "prune:2:4", "rtn4"),
                           probes=("mia",))
    report = run_audit(request).report
    rows = {row.format: row for row in report.formats}
    pruned = rows["prune:2:4"]
    assert pruned.error is not None and "prune:2:4 changed no weights of this model" in pruned.error
    assert pruned.checks and all(c.verdict == "UNKNOWN" for c in pruned.checks)
    assert rows["rtn4"].error is None and rows["rtn4"].details["changed_tensors"] == 8


def test_installed_auditq_check_measures_rtn4_and_fp8_on_gpt2(gpt2_pair, tmp_path):
    base, unlearned, suite = gpt2_pair
    exe = Path(sys.executable).with_name("auditq")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{exe.parent}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    out = tmp_path / "out"
    proc = subprocess.run([str(exe), "check", str(base), str(unlearned), "--suite", str(suite),
                           "-f", "fp,rtn4,fp8", "--probes", "mia,utility", "--out", str(out), "--no-cache", "-q"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode in (0, 1, 3), proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    rows = {f["format"]: f for f in report["formats"]}
    assert list(rows) == ["fp", "rtn4", "fp8"]
    for name in ("rtn4", "fp8"):
        row = rows[name]
        assert row["error"] is None, row["error"]
        details = row["details"]
        assert details["covered_tensors"] == 8 and details["changed_tensors"] == 8, details
        assert details["changed_elements"] > 0 and 0 < details["covered_parameters_share"] < 1
        assert set(details["changes"]) == {"base", "unlearned"}
        assert all(v["changed_tensors"] == 8 for v in details["changes"].values())
    # the quantized rows are not the fp row again: BASE's retain loss differs
    nll = {name: rows[name]["roles"]["base"]["retain_nll"] for name in rows}
    assert None not in nll.values() and nll["rtn4"] != nll["fp"] and nll["fp8"] != nll["fp"], nll
    # the weight evidence counts every Conv1D code of the pair (one nudged tensor differs)
    from safetensors import safe_open

    with safe_open(str(base / "model.safetensors"), framework="pt") as f:
        n = sum(f.get_slice(k).get_shape()[0] * f.get_slice(k).get_shape()[1] for k in f.keys()
                if k.startswith("transformer.h.") and len(f.get_slice(k).get_shape()) == 2)
    evidence = rows["rtn4"]["weight_evidence"]
    assert evidence["codes_compared"] == n and evidence["tensors_compared"] == 8
    assert evidence["tensors_identical"] == 7 and evidence["codes_equal_share"] < 1 and not evidence["bit_identical"]
