"""GGUFArtifact: a .gguf file made outside the audit, given by path only, scored as one more row."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

from gguf_helpers import PARITY_TEXTS

from auditq.errors import BackendUnavailable, InputError, MeasurementError  # noqa: E402
from auditq.formats import make_format  # noqa: E402
from auditq.formats.gguf import ArtifactMissing, GGUFArtifact  # noqa: E402
from auditq.formats.gguf.convert import convert_to_gguf  # noqa: E402
from auditq.formats.gguf.quantize import quantize_gguf  # noqa: E402

pytestmark = pytest.mark.gguf


@pytest.fixture(scope="module")
def user_files(gguf_llama, gguf_qwen2, tmp_path_factory):
    """Files 'made by the user': converted and quantized in a directory the audit never sees."""
    out = tmp_path_factory.mktemp("user-gguf")
    f32 = convert_to_gguf(gguf_llama.model, gguf_llama.tokenizer, gguf_llama.config, out / "mine-f32.gguf").path
    q4 = quantize_gguf(f32, out / "mine-Q4_0.gguf", "q4_0")
    other = convert_to_gguf(gguf_qwen2.model, gguf_qwen2.tokenizer, gguf_qwen2.config, out / "qwen.gguf").path
    return {"f32": f32, "q4": q4, "qwen": other}


def _logprobs(fmt, ckpt, ctx):
    seqs = [ckpt.tokenizer(t)["input_ids"] for t in PARITY_TEXTS]
    with fmt.apply(ckpt, ctx) as lm:
        return np.concatenate([s.logprobs for s in lm.score(seqs)])


def test_artifact_scores_exactly_like_the_same_format_made_inside(gguf_llama, gguf_ctx, user_files):
    art = GGUFArtifact.from_path(user_files["q4"], role_paths={"base": user_files["f32"]})
    assert art.name == "gguf-file:mine-Q4_0.gguf" and art.roles == ("unlearned", "base")
    assert art.path_for("retrain") is None
    art.validate({"base": gguf_llama, "unlearned": gguf_llama})

    got = _logprobs(art, gguf_llama, gguf_ctx("unlearned"))
    inside = _logprobs(make_format("gguf:q4_0"), gguf_llama, gguf_ctx())
    assert np.array_equal(got, inside)  # same bytes, same engine -> identical numbers

    info = art.details()
    assert info["file_type"] == "Q4_0" and info["tensor_types"]["Q4_0"] == 15
    assert info["source"] == str(user_files["q4"]) and len(info["sha256"]) == 64
    assert info["tokenizer_parity_texts"] == len(PARITY_TEXTS)
    assert "output" in info["note"]

    base = _logprobs(art, gguf_llama, gguf_ctx("base"))  # the base role gets its own file (F32 here)
    assert not np.array_equal(base, got)
    assert art.details()["by_role"]["base"] == {"F32": 21}


def test_missing_role_gets_a_same_type_stand_in_and_role_key_is_required(gguf_llama, gguf_ctx, user_files):
    art = GGUFArtifact.from_path(user_files["q4"])
    # no base file: the base checkpoint is quantized by llama.cpp to the given file's own type
    stand_in = _logprobs(art, gguf_llama, gguf_ctx("base"))
    same_type = _logprobs(make_format("gguf:q4_0"), gguf_llama, gguf_ctx("base"))
    assert np.array_equal(stand_in, same_type)
    assert "quantized to Q4_0 by llama.cpp" in art._runs["base"]["stand_in"]
    assert issubclass(ArtifactMissing, BackendUnavailable)
    ctx = gguf_ctx(role=None)
    with pytest.raises(MeasurementError, match="role"):
        with art.apply(gguf_llama, ctx):
            pass


def test_bad_paths_are_input_errors(tmp_path, user_files, gguf_llama):
    with pytest.raises(InputError, match="does not exist"):
        GGUFArtifact.from_path(tmp_path / "nope.gguf")
    (tmp_path / "fake.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(InputError, match="not a GGUF file"):
        GGUFArtifact.from_path(tmp_path / "fake.gguf")
    with pytest.raises(InputError, match="no retrain checkpoint"):
        GGUFArtifact.from_path(user_files["q4"], {"retrain": user_files["f32"]}).validate({"unlearned": gguf_llama})
    with pytest.raises(InputError):
        make_format("gguf:artifact")


def test_artifact_of_another_model_is_refused(gguf_llama, gguf_ctx, user_files):
    art = GGUFArtifact.from_path(user_files["qwen"])
    with pytest.raises(InputError, match="does not match"):
        art.validate({"unlearned": gguf_llama})
    with pytest.raises(InputError, match="hidden_size 256 vs 128"):
        with art.apply(gguf_llama, gguf_ctx()):
            pass
