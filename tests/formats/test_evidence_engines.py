"""Weight-space evidence from the real engines' codes: GPTQModel (GPTQ), llama.cpp (GGUF), bitsandbytes.

For each engine: an exact copy of BASE gives 100% equal codes and a bit-identical row; a model with
small in-cell moves gives fewer equal codes; and the recorded codes, mapped back to HF layout,
reconstruct the engine's own dequantized weights (so the unpacking and layout mapping are right).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf_helpers import PARITY_TEXTS, build_llama_checkpoint, load
from safetensors.torch import load_file, save_file

from auditq.audit.evidence import IDENTICAL_NOTE
from auditq.audit.pipeline import run_audit
from auditq.audit.request import audit_request
from auditq.formats.base import FormatContext
from auditq.formats.code_recorder import CodeRecorder, codes_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_files import write_suite  # noqa: E402

pytestmark = pytest.mark.slow

TEXTS = [f"The quick brown fox number {i} jumps over the lazy dog in Warsaw and then runs home." for i in range(6)]
HAVE = {"gptq": importlib.util.find_spec("gptqmodel") is not None,
        "gguf": importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("gguf") is not None,
        "bnb": importlib.util.find_spec("bitsandbytes") is not None}


def _needs(engine):
    return pytest.mark.skipif(not HAVE[engine], reason=f"needs the auditq[{engine}] extra")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evidence-engines")
    base = build_llama_checkpoint(root / "base", hidden=64, intermediate=128, seed=0)
    copy = root / "copy"
    shutil.copytree(base, copy)
    moved = root / "moved"
    shutil.copytree(base, moved)
    state = load_file(str(moved / "model.safetensors"))
    gen = torch.Generator().manual_seed(0)
    for name in [k for k in state if k.endswith("proj.weight")]:
        w = state[name]
        state[name] = w + 0.01 * w.abs().max() * (torch.rand(w.shape, generator=gen) - 0.5)
    save_file(state, str(moved / "model.safetensors"), metadata={"format": "pt"})
    records = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)]
    suite = write_suite(root / "suite", forget=records[:3], retain=records[3:], holdout=records[3:],
                        toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 6\nanswer_tokens = 4\n")
    yield {"base": base, "copy": copy, "moved": moved, "suite": suite, "root": root}
    torch.set_num_threads(previous)


def _evidence(pair, unlearned, fmt):
    request = audit_request(base=pair["base"], unlearned=pair[unlearned], suite=pair["suite"],
                            formats=("fp", fmt), probes=("utility",))
    row = run_audit(request).report.formats[1]
    assert row.error is None, row.error
    return row.weight_evidence


ENGINE_FORMATS = [pytest.param("gptq4", marks=_needs("gptq")), pytest.param("gguf:q4_0", marks=_needs("gguf")),
                  pytest.param("gguf:q8_0", marks=_needs("gguf")), pytest.param("bnb:nf4", marks=_needs("bnb")),
                  pytest.param("bnb:int8", marks=_needs("bnb"))]


@pytest.mark.parametrize("fmt", ENGINE_FORMATS)
def test_copy_is_bit_identical_and_moved_weights_are_not(pair, fmt):
    same = _evidence(pair, "copy", fmt)
    assert same["codes_equal_share"] == 1.0 and same["bit_identical"] and IDENTICAL_NOTE in same["summary"], same
    assert same["mean_abs_delta_steps"] == 0.0 and same["code_kind"] == "integer codes"
    moved = _evidence(pair, "moved", fmt)
    assert 0.0 < moved["codes_equal_share"] < 1.0 and not moved["bit_identical"], moved
    # 2 layers x 7 projections; GGUF also quantizes token_embd and output
    assert moved["mean_abs_delta_steps"] > 0 and moved["tensors_compared"] == (16 if fmt.startswith("gguf") else 14)


@_needs("gguf")
def test_gguf_kquant_tensors_are_compared_as_values(pair):
    evidence = _evidence(pair, "copy", "gguf:q4_k_m")
    # hidden 64 is below K-quants' 256 block: llama.cpp falls back to legacy types for most tensors
    assert evidence["codes_equal_share"] == 1.0 and evidence["bit_identical"]


def _recorded(workdir, fmt, role="base"):
    root = codes_dir(workdir, fmt, role)
    index = json.loads((root / "index.json").read_text())
    out = {}
    for name, entry in index.items():
        with np.load(root / entry["file"], allow_pickle=False) as data:
            out[name] = {k: data[k] for k in data.files}
    return out


def _expand(record):
    step, codes = record["step"], record["codes"]
    return step if step.shape == codes.shape else step[:, record["group_of_col"]]


@_needs("gguf")
def test_gguf_codes_in_hf_layout_reconstruct_the_weights(pair, tmp_path):
    """codes × step (Q4_0: d·q) equals the weight within half a step, q/k RoPE permutation undone."""
    from auditq.formats import make_format

    checkpoint = load(pair["base"], role="base")
    ctx = FormatContext(workdir=tmp_path, seed=0, parity_texts=PARITY_TEXTS, role="base", threads=1)
    with make_format("gguf:q4_0").apply(checkpoint, ctx):
        pass
    state = checkpoint.model.state_dict()
    for name, record in _recorded(tmp_path, "gguf:q4_0").items():
        step = _expand(record)
        error = np.abs(record["codes"] * step - state[name].numpy()) / np.abs(step)
        # half a step, plus the float16 rounding of d times the code; a few clipped codes (Q4_0 maps +max to 15)
        within = error <= 0.5 + np.abs(record["codes"]) * 2.0 ** -10 + 1e-4
        assert within.mean() > 0.99 and error.mean() < 0.3, name  # an unpermuted q/k would be off by ~|w|


@_needs("gptq")
def test_gptq_codes_match_gptqmodels_dequantized_weights(pair, tmp_path):
    """(code − zero) × scale equals GPTQModel's own dequantization, for one constant zero per tensor."""
    from auditq.formats import make_format
    from auditq.formats.gptqmodel.load import dequantized_model

    checkpoint = load(pair["base"], role="base")
    ctx = FormatContext(workdir=tmp_path, seed=0, calibration_texts=tuple(TEXTS * 4),
                        role="base", keep_quantized=True)
    fmt = make_format("gptq4")
    with fmt.apply(checkpoint, ctx):
        out = Path(fmt.details()["checkpoint_dir"])
    model, _ = dequantized_model(out, tmp_path)
    state = model.state_dict()
    for name, record in _recorded(tmp_path, "gptq4").items():
        step = _expand(record)
        offset = record["codes"] - state[name].numpy() / step
        assert np.allclose(offset, np.round(offset.mean()), atol=1e-2), name


@_needs("bnb")
def test_bnb_int8_codes_reconstruct_the_weights(pair, tmp_path):
    from auditq.formats import make_format

    checkpoint = load(pair["base"], role="base")
    ctx = FormatContext(workdir=tmp_path, seed=0, role="base")
    with make_format("bnb:int8").apply(checkpoint, ctx):
        pass
    state = checkpoint.model.state_dict()
    recorded = _recorded(tmp_path, "bnb:int8")
    assert len(recorded) == 14
    for name, record in recorded.items():
        step = _expand(record)
        error = np.abs(record["codes"] * step - state[name].numpy()) / step  # LLM.int8 quantizes a float16 copy
        assert (error <= 0.5 + 2.0 ** -9 * np.abs(record["codes"]) + 1e-3).mean() > 0.99 and error.mean() < 0.3, name


def test_recorder_refuses_nothing_and_reads_back_without_pickle(tmp_path):
    recorder = CodeRecorder(tmp_path, "rtn4", "base")
    recorder.add("w", np.array([[1, -2], [3, 4]]), np.array([[0.5], [0.25]]), np.array([0, 0]))
    assert _recorded(tmp_path, "rtn4")["w"]["codes"].tolist() == [[1, -2], [3, 4]]


@_needs("gguf")
def test_gguf_artifact_files_give_weight_evidence(pair, tmp_path):
    """--artifact: the user's own Q4_0 files of BASE and UNLEARNED are compared code by code."""
    from auditq.formats.gguf import GGUFArtifact
    from auditq.formats.gguf.convert import convert_to_gguf
    from auditq.formats.gguf.quantize import quantize_gguf

    files = {}
    for role in ("base", "moved"):
        ckpt = load(pair[role], role=role)
        f32 = convert_to_gguf(ckpt.model, ckpt.tokenizer, ckpt.config, tmp_path / f"{role}-f32.gguf").path
        files[role] = quantize_gguf(f32, tmp_path / f"{role}-Q4_0.gguf", "q4_0")
    artifact = GGUFArtifact.from_path(files["moved"], role_paths={"base": files["base"]})
    request = audit_request(base=pair["base"], unlearned=pair["moved"], suite=pair["suite"], formats=("fp", "gguf:q4_0"),
                            probes=("utility",), artifact_formats=(artifact,))
    rows = {f.format: f for f in run_audit(request).report.formats}
    from_files, inside = rows[artifact.name].weight_evidence, rows["gguf:q4_0"].weight_evidence
    assert from_files["codes_compared"] == inside["codes_compared"] > 0
    assert from_files["codes_equal_share"] == pytest.approx(inside["codes_equal_share"], abs=1e-12)


@_needs("gguf")
def test_gguf_kquant_tensors_with_a_256_wide_input_are_compared_as_values(tmp_path):
    """Qwen2 hidden 256: Q4_K_M gives real K-quant tensors, compared by dequantized value (no step)."""
    try:
        from .gguf_helpers import build_qwen2_checkpoint
    except ImportError:
        from gguf_helpers import build_qwen2_checkpoint  # type: ignore

    base = build_qwen2_checkpoint(tmp_path / "base")
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    records = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)]
    suite = write_suite(tmp_path / "suite", forget=records[:3], retain=records[3:], holdout=records[3:],
                        toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 6\nanswer_tokens = 4\n")
    request = audit_request(base=base, unlearned=copy, suite=suite, formats=("fp", "gguf:q4_k_m"), probes=("utility",))
    row = run_audit(request).report.formats[1]
    assert row.error is None, row.error
    evidence = row.weight_evidence
    assert "dequantized values" in evidence["code_kind"] and evidence["bit_identical"]
    assert evidence["codes_equal_share"] == 1.0
