"""GGUF through llama.cpp's own convert_hf_to_gguf.py (auditq.formats.gguf.hf_convert), isolated in a subprocess.

- a SentencePiece-vocabulary Llama (auditq's converter refuses it) converts, loads and scores in llama.cpp
  within 1e-3 of torch, its tokenizer matches the checkpoint's, and auditq's process still runs gguf 0.19.0;
- without the converter directory the row is refused with one line naming both reasons, before any
  subprocess runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from arch_zoo import build_arch  # noqa: E402
from gguf_helpers import PARITY_TEXTS, load  # noqa: E402

from auditq.errors import BackendUnavailable  # noqa: E402
from auditq.formats import make_format  # noqa: E402
from auditq.formats.base import FormatContext  # noqa: E402
from auditq.formats.gguf.hf_convert import converter_dir  # noqa: E402

pytestmark = pytest.mark.gguf


@pytest.fixture(scope="module")
def spm_llama(tmp_path_factory, one_thread):
    return load(build_arch("llama2-spm", tmp_path_factory.mktemp("spm-llama") / "ckpt"))


def _ctx(workdir: Path) -> FormatContext:
    return FormatContext(workdir=workdir, parity_texts=tuple(PARITY_TEXTS), role="unlearned", threads=1)


@pytest.mark.slow
def test_sentencepiece_llama_through_llamacpp_converter(spm_llama, tmp_path):
    if not (converter_dir() / "convert_hf_to_gguf.py").is_file():
        pytest.skip(f"llama.cpp's converter is not installed in {converter_dir()} (./setup.sh)")
    ids = [spm_llama.tokenizer(t)["input_ids"] for t in PARITY_TEXTS]
    with torch.inference_mode():
        ref = [torch.log_softmax(spm_llama.model(input_ids=torch.tensor([s])).logits[0, :-1].double(), -1)
               .gather(1, torch.tensor(s[1:]).unsqueeze(1))[:, 0].numpy() for s in ids]
    fmt = make_format("gguf:f32")
    with fmt.apply(spm_llama, _ctx(tmp_path)) as lm:  # the tokenizer parity check runs inside apply
        got = lm.score(ids)
    worst = max(float(np.abs(np.asarray(g.logprobs) - r).max()) for g, r in zip(got, ref))
    assert worst <= 1e-3
    info = fmt.details()
    assert info["converter"].startswith("llama.cpp convert_hf_to_gguf.py") and info["tokenizer_parity_texts"] == len(PARITY_TEXTS)
    assert "SentencePiece" in info["note"] or "byte_fallback" in info["note"]
    import gguf
    from importlib.metadata import version

    assert version("gguf") == "0.19.0" and str(converter_dir()) not in str(Path(gguf.__file__).resolve())
    assert not any(m == "convert_hf_to_gguf" or m.startswith("conversion") for m in sys.modules)


def test_missing_converter_is_a_one_line_refusal(spm_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITQ_GGUF_CONVERTER", str(tmp_path / "nowhere"))
    with pytest.raises(BackendUnavailable) as info:
        with make_format("gguf:q8_0").apply(spm_llama, _ctx(tmp_path / "work")):
            pass
    message = str(info.value)
    assert "\n" not in message and "byte_fallback" in message and "converter is not installed" in message
    assert not list((tmp_path / "work").rglob("*.gguf*"))
