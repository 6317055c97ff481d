"""llama.cpp's own quantizer: the tensor types it really produced, and the K-quant fallback."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

from gguf_helpers import PARITY_TEXTS

from auditq.errors import InputError  # noqa: E402
from auditq.formats import make_format  # noqa: E402
from auditq.formats.gguf.quantize import QUANT_TYPES, fallback_note, read_tensors  # noqa: E402

pytestmark = pytest.mark.gguf


def _score(fmt, ckpt, ctx):
    seqs = [ckpt.tokenizer(t)["input_ids"] for t in PARITY_TEXTS]
    with fmt.apply(ckpt, ctx) as lm:
        return np.concatenate([s.logprobs for s in lm.score(seqs)])


def test_parse_accepts_the_issue_formats_and_refuses_others():
    for spec in ("gguf:q4_0", "gguf:q4_k_m", "gguf:q5_k_m", "gguf:q8_0", "gguf:f16", "gguf:f32"):
        assert make_format(spec).quant == spec.split(":")[1]
    for bad in ("gguf", "gguf:q9_0", "gguf:q4_0:x"):
        with pytest.raises(InputError):
            make_format(bad)


def test_q4_0_and_q8_0_tensor_types_on_hidden_128(gguf_llama, gguf_ctx):
    ctx = gguf_ctx()
    fp = _score(make_format("gguf:f32"), gguf_llama, ctx)
    q8, q4 = make_format("gguf:q8_0"), make_format("gguf:q4_0")
    lp8, lp4 = _score(q8, gguf_llama, ctx), _score(q4, gguf_llama, ctx)

    d8, d4 = q8.details(), q4.details()
    # 2 layers x 7 matrices + token_embd + output = 16 weight tensors; 2 x 2 norms + output_norm = 5 F32
    assert d8["tensor_types"] == {"Q8_0": 16, "F32": 5} and "note" not in d8
    assert d4["tensor_types"]["Q4_0"] == 15 and d4["tensor_types"]["F32"] == 5
    # Q4_0's mix wants Q6_K for output.weight; 128 columns is not a multiple of 256 -> Q8_0
    assert d4["tensor_types"].get("Q8_0") == 1 and "output" in d4["note"]
    assert d4["engine"] == "llama.cpp" and d4["requested"] == "Q4_0"
    assert 4.5 < d4["bits_per_weight"] < 5.5 and d8["bits_per_weight"] == pytest.approx(8.5)

    # quantization is real and ordered: q4 moves log-probs more than q8
    e8, e4 = np.abs(lp8 - fp).mean(), np.abs(lp4 - fp).mean()
    assert 0 < e8 < e4


def test_k_quants_fall_back_on_hidden_128_and_the_report_says_so(gguf_llama, gguf_ctx):
    fmt = make_format("gguf:q4_k_m")
    _score(fmt, gguf_llama, gguf_ctx())
    info = fmt.details()
    assert not {"Q4_K", "Q5_K", "Q6_K"} & info["tensor_types"].keys()
    assert info["tensor_types"].get("Q5_0", 0) > 0  # llama.cpp's Q4_K -> Q5_0 fallback
    assert "requested Q4_K_M" in info["note"] and "not a multiple of 256" in info["note"]
    assert "16 of 16 weight tensors" in info["note"]


def test_k_quants_are_real_on_hidden_256(gguf_qwen2, gguf_ctx):
    fmt = make_format("gguf:q4_k_m")
    _score(fmt, gguf_qwen2, gguf_ctx())
    types = fmt.details()["tensor_types"]
    assert types["Q4_K"] >= 10 and types.get("Q6_K", 0) >= 1  # Q4_K_M keeps some tensors at Q6_K
    assert "not a multiple of 256" not in fmt.details().get("note", "")


def test_quantized_file_is_removed_unless_kept(gguf_llama, gguf_ctx):
    ctx = gguf_ctx()
    with make_format("gguf:q8_0").apply(gguf_llama, ctx) as lm:
        path = lm.model_path
        assert path.is_file()
    assert not path.exists()
    assert path.with_name("model-f32.gguf").is_file()  # the shared conversion stays for the run
    with make_format("gguf:q8_0").apply(gguf_llama, gguf_ctx(keep_gguf=True)) as lm:
        path = lm.model_path
    assert path.is_file() and {t.type for t in read_tensors(path)} == {"Q8_0", "F32"}


def test_fallback_note_logic():
    from auditq.formats.gguf.quantize import TensorInfo

    t = [TensorInfo("blk.0.attn_q.weight", "Q5_0", (128, 128), 1, 1),
         TensorInfo("blk.0.ffn_down.weight", "Q6_K", (512, 256), 1, 1),
         TensorInfo("blk.0.ffn_up.weight", "Q4_K", (256, 512), 1, 1),
         TensorInfo("blk.0.attn_norm.weight", "F32", (256,), 1, 1)]
    note = fallback_note("q4_k_m", t)
    assert note.startswith("requested Q4_K_M but 2 of 3 weight tensors are not Q4_K")
    assert "1 has an input dimension that is not a multiple of 256" in note and "ffn_down" in note
    assert fallback_note("q8_0", [TensorInfo("a.weight", "Q8_0", (32, 32), 1, 1)]) is None
    assert set(QUANT_TYPES) >= {"q4_0", "q4_k_m", "q5_k_m", "q8_0", "f16", "f32"}


def test_llama_cpp_log_stays_off_stderr_and_failures_are_measurement_errors(gguf_llama, gguf_ctx, capfd, tmp_path):
    from auditq.errors import MeasurementError
    from auditq.formats.gguf.quantize import quantize_gguf

    with make_format("gguf:q5_k_m").apply(gguf_llama, gguf_ctx()) as lm:  # K-quant fallbacks are logged
        lm.score([gguf_llama.tokenizer("hello")["input_ids"]])
    err = capfd.readouterr().err
    assert "falling back" not in err and "llama_context" not in err, err[-500:]
    with pytest.raises(MeasurementError, match="failed to quantize"):
        quantize_gguf(tmp_path / "missing.gguf", tmp_path / "out.gguf", "q4_0")
    assert not (tmp_path / "out.gguf").exists()
