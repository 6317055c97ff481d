"""Weight-space evidence (auditq.audit.evidence): share of UNLEARNED's quantized codes equal to BASE's and the
mean |Δw| in quantization steps, computed from the codes each format writes while one model is resident."""

from __future__ import annotations

import shutil

import pytest
import torch
from formats.gguf_helpers import build_llama_checkpoint
from safetensors.torch import load_file, save_file
from suite_files import write_suite

from auditq.audit.evidence import IDENTICAL_NOTE
from auditq.audit.pipeline import run_audit
from auditq.audit.request import audit_request
from auditq.formats.rtn import rtn_codes, to_groups

TEXTS = [f"The quick brown fox number {i} jumps over the lazy dog in Warsaw." for i in range(6)]


@pytest.fixture(scope="module")
def base_and_suite(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("evidence")
    base = build_llama_checkpoint(root / "base", hidden=64, intermediate=128, seed=0)
    records = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)]
    suite = write_suite(root / "suite", forget=records[:3], retain=records[3:], holdout=records[3:],
                        toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 6\nanswer_tokens = 4\n")
    return root, base, suite


def _linear_names(state):
    return [k for k in state if k.endswith("proj.weight") or k == "lm_head.weight"]


def _variant(base, out, edit):
    """Copy the checkpoint and edit its nn.Linear weights in place with `edit(name, weight) -> weight`."""
    shutil.copytree(base, out)
    state = load_file(str(out / "model.safetensors"))
    for name in _linear_names(state):
        state[name] = edit(name, state[name].clone())
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def _inside_int4_cell(name, w):
    """Move every weight by up to 0.4 of its per-channel int4 step, staying inside its RTN cell."""
    grouped, _ = to_groups(w.double(), None)
    codes, delta = rtn_codes(grouped, 4)
    gen = torch.Generator().manual_seed(len(name))
    moved = grouped + (torch.rand(grouped.shape, generator=gen, dtype=torch.float64) - 0.5) * 0.8 * delta
    low, high = (codes - 0.45) * delta, (codes + 0.45) * delta
    limit = grouped.abs().amax(dim=1, keepdim=True)
    moved = torch.minimum(torch.maximum(moved, low), high).clamp(-limit, limit)
    pinned = grouped.abs() == limit  # each row's max|w| stays put, so Δ does not move
    return torch.where(pinned, grouped, moved).reshape(w.shape).to(w.dtype)


def _audit(base, unlearned, suite, formats):
    request = audit_request(base=base, unlearned=unlearned, suite=suite, formats=formats, probes=("utility",))
    return {f.format: f for f in run_audit(request).report.formats}


def test_moves_inside_the_int4_cell_are_bit_identical_at_rtn4_but_not_at_rtn8(base_and_suite):
    root, base, suite = base_and_suite
    unlearned = _variant(base, root / "in-cell", _inside_int4_cell)
    rows = _audit(base, unlearned, suite, ("fp", "rtn4", "rtn8"))
    rtn4, rtn8 = rows["rtn4"].weight_evidence, rows["rtn8"].weight_evidence
    assert rows["fp"].weight_evidence is None  # no codes in full precision
    assert rtn4["codes_equal_share"] == 1.0 and rtn4["bit_identical"] and rtn4["scales_identical"]
    assert rtn4["unquantized_changed"] == [] and IDENTICAL_NOTE in rtn4["summary"]
    assert 0.05 < rtn4["mean_abs_delta_steps"] < 0.45  # moved, but inside one cell
    assert rtn8["codes_equal_share"] < 0.5 and not rtn8["bit_identical"]
    assert rtn8["mean_abs_delta_steps"] > 1.0  # 0.2 int4 steps = 3.2 int8 steps on average
    assert set(rtn4["per_tensor"]) >= {"lm_head.weight", "model.layers.0.self_attn.q_proj.weight"}


@pytest.mark.parametrize("block", [1 << 20, 200])  # whole tensors, and blocks of a few rows (as for a real lm_head)
def test_known_number_of_changed_codes(base_and_suite, block, monkeypatch):
    """Exactly k codes of one tensor move by one step: share = 1 - k/N and mean |Δw| = k/N steps."""
    monkeypatch.setattr("auditq.audit.evidence.EVIDENCE_BLOCK_ELEMENTS", block)
    root, base, suite = base_and_suite
    target, k = "model.layers.1.mlp.down_proj.weight", 37

    def bump(name, w):
        if name != target:
            return w
        grouped, _ = to_groups(w.double(), None)
        codes, delta = rtn_codes(grouped, 4)
        flat_codes, flat = codes.reshape(-1), grouped.reshape(-1).clone()
        step = delta.expand_as(grouped).reshape(-1)
        chosen = torch.nonzero((flat_codes >= -3) & (flat_codes <= 3)).reshape(-1)[:k]
        flat[chosen] += step[chosen]
        return flat.reshape(w.shape).to(w.dtype)

    unlearned = _variant(base, root / f"bumped-{block}", bump)
    evidence = _audit(base, unlearned, suite, ("fp", "rtn4"))["rtn4"].weight_evidence
    n = evidence["codes_compared"]
    assert evidence["codes_equal_share"] == pytest.approx(1 - k / n, abs=1e-12)
    assert evidence["mean_abs_delta_steps"] == pytest.approx(k / n, rel=1e-4)
    assert evidence["per_tensor"][target]["codes_equal_share"] == pytest.approx(
        1 - k / evidence["per_tensor"][target]["n"])
    assert evidence["tensors_identical"] == evidence["tensors_compared"] - 1 and not evidence["bit_identical"]


def test_changed_unquantized_tensor_is_not_bit_identical(base_and_suite):
    root, base, suite = base_and_suite
    out = root / "norm-changed"
    shutil.copytree(base, out)
    state = load_file(str(out / "model.safetensors"))
    state["model.norm.weight"] = state["model.norm.weight"] * 1.5
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    evidence = _audit(base, out, suite, ("fp", "rtn4"))["rtn4"].weight_evidence
    assert evidence["codes_equal_share"] == 1.0 and evidence["unquantized_changed"] == ["model.norm.weight"]
    assert not evidence["bit_identical"] and "unquantized" in evidence["summary"]


@pytest.mark.slow
def test_demo_fragile_model_is_bit_identical_to_base_at_rtn4_only(demo_models, one_thread):
    """The demo's planted failure lives inside BASE's per-channel int4 cells (auditq.demo.train)."""
    rows = _audit(demo_models.base, demo_models.fragile, demo_models.suite, ("fp", "rtn4", "rtn8", "rtn4:g64"))
    rtn4, rtn8, g64 = (rows[name].weight_evidence for name in ("rtn4", "rtn8", "rtn4:g64"))
    assert rtn4["codes_equal_share"] == 1.0 and rtn4["bit_identical"] and IDENTICAL_NOTE in rtn4["summary"]
    assert 0 < rtn4["mean_abs_delta_steps"] < 0.5  # the weights did move, inside their int4 cells
    assert rtn8["codes_equal_share"] < 0.5 and not rtn8["bit_identical"]  # measured 0.065, 5.8 steps
    assert rtn8["mean_abs_delta_steps"] > 1.0
    assert g64["codes_equal_share"] < 1.0 and not g64["bit_identical"]  # another grouping: measured 0.770
    honest = _audit(demo_models.base, demo_models.honest, demo_models.suite, ("fp", "rtn4"))["rtn4"].weight_evidence
    assert not honest["bit_identical"] and honest["codes_equal_share"] < 1.0


def test_reports_show_the_evidence(base_and_suite, tmp_path, monkeypatch, capsys):
    import json

    from tiny_memoriser import run_cli

    from auditq.report.json_writer import report_from_dict

    root, base, suite = base_and_suite
    unlearned = root / "in-cell" if (root / "in-cell").exists() else _variant(base, root / "in-cell", _inside_int4_cell)
    code, out, _ = run_cli(monkeypatch, capsys, "check", str(base), str(unlearned), "--suite", str(suite),
                           "-f", "fp,rtn4,rtn8", "--probes", "utility", "--no-cache", "--threads", "1",
                           "--format", "html", "--out", str(tmp_path / "out"))
    assert "weight space rtn4" in out and "the unlearning does not exist in this format" in " ".join(out.split())
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = {f["format"]: f for f in data["formats"]}
    assert rows["rtn4"]["weight_evidence"]["bit_identical"] is True
    assert rows["rtn8"]["weight_evidence"]["bit_identical"] is False and rows["fp"]["weight_evidence"] is None
    assert report_from_dict(data).formats[1].weight_evidence["codes_equal_share"] == 1.0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Weight-space evidence" in md and "| rtn4 | 100.0% |" in md
    assert 'id="weight-evidence"' in (tmp_path / "out" / "report.html").read_text()


def test_rows_served_from_the_result_cache_keep_their_evidence(base_and_suite, tmp_path):
    from auditq.cache.store import ResultCache

    root, base, suite = base_and_suite
    unlearned = root / "in-cell" if (root / "in-cell").exists() else _variant(base, root / "in-cell", _inside_int4_cell)
    cache = ResultCache(tmp_path / "cache")
    rows = []
    for _ in range(2):
        request = audit_request(base=base, unlearned=unlearned, suite=suite, formats=("fp", "rtn4"),
                                probes=("utility",), cache=cache)
        rows.append(run_audit(request).report.formats[1].weight_evidence)
    assert cache.hits > 0  # the second run quantized nothing
    assert rows[1] == rows[0] and rows[1]["bit_identical"]
