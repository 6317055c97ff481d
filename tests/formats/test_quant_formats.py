"""gptq / awq / bnb formats without their engines: parsing, missing-engine rows, shared helpers.

Runs everywhere (no GPTQModel or bitsandbytes needed); the engine tests are test_gptq.py,
test_awq.py and test_bnb.py.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from auditq.errors import BackendUnavailable, InputError, MeasurementError
from auditq.formats import make_format
from auditq.formats.awq import AWQFormat
from auditq.formats.base import FormatContext
from auditq.formats.bnb import BitsAndBytesFormat
from auditq.formats.gptq import GPTQFormat, QuantizedArtifact
from auditq.formats.gptqmodel.calibration import default_group_size
from auditq.formats.gptqmodel.env import engine_env
from auditq.formats.gptqmodel.load import quant_method


def test_gptq_specs():
    fmt = make_format("gptq4")
    assert isinstance(fmt, GPTQFormat)
    assert (fmt.options.bits, fmt.options.group_size, fmt.options.desc_act, fmt.options.dequant) == (4, None, False, False)
    fmt = make_format("GPTQ3:g64:act:dequant")
    assert (fmt.options.bits, fmt.options.group_size, fmt.options.desc_act, fmt.options.dequant) == (3, 64, True, True)
    assert make_format("gptq8").options.bits == 8
    for bad in ("gptq", "gptq5", "gptq4:g0", "gptq4:g48", "gptq4:g8", "gptq4:wat", "gptq16"):
        with pytest.raises(InputError):
            make_format(bad)


def test_awq_specs():
    fmt = make_format("awq4:g64")
    assert isinstance(fmt, AWQFormat) and fmt.options.group_size == 64
    assert make_format("awq4:dequant").options.dequant
    for bad in ("awq", "awq3", "awq8", "awq4:act", "awq4:x"):
        with pytest.raises(InputError):
            make_format(bad)


def test_bnb_specs():
    for quant in ("nf4", "fp4", "int8"):
        fmt = make_format(f"bnb:{quant}")
        assert isinstance(fmt, BitsAndBytesFormat) and fmt.quant == quant and not fmt.double_quant
    assert make_format("bnb:nf4:dq").double_quant
    for bad in ("bnb", "bnb:int4", "bnb:int8:dq", "bnb:nf4:x", "bnb4:nf4"):
        with pytest.raises(InputError):
            make_format(bad)


def test_details_before_apply():
    info = make_format("gptq4:g128:act").details()
    assert (info["engine"], info["method"], info["bits"], info["group_size"], info["act_order"]) == \
        ("gptqmodel", "gptq", 4, 128, True)
    assert "auto" in str(make_format("awq4").details()["group_size"])
    info = make_format("bnb:fp4").details()
    assert (info["engine"], info["quant_type"], info["bits"], info["double_quant"]) == ("bitsandbytes", "fp4", 4, False)


def _tiny_llama(hidden=128, intermediate=384):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=64,
                                        tie_word_embeddings=False))


def test_default_group_size():
    assert default_group_size(_tiny_llama(128, 384)) == 128
    assert default_group_size(_tiny_llama(96, 192)) == 32
    with pytest.raises(MeasurementError):
        default_group_size(_tiny_llama(40, 120))


class _Ckpt:
    def __init__(self, model):
        self.model, self.pad_token_id, self.eos_token_id = model, 0, 1
        self.path, self.tokenizer, self.config, self.file_hashes = "mem", None, model.config, {}


@pytest.mark.parametrize("spec,module,hint", [("gptq4", "gptqmodel", "auditq[gptq]"),
                                              ("awq4", "gptqmodel", "auditq[gptq]"),
                                              ("bnb:nf4", "bitsandbytes", "auditq[bnb]")])
def test_missing_engine_is_backend_unavailable(spec, module, hint, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    model = _tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = FormatContext(workdir=tmp_path, calibration_texts=("some calibration text",))
    with pytest.raises(BackendUnavailable) as info:
        with make_format(spec).apply(_Ckpt(model), ctx):
            pass
    assert info.value.install_hint == f"pip install '{hint}'" and hint in str(info.value)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_engine_env_restores_everything_even_on_error(tmp_path):
    env, cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    with pytest.raises(RuntimeError), engine_env(tmp_path / "scratch"):
        os.environ["HF_HOME"] = "/tmp/elsewhere"
        os.environ.pop("PATH", None)
        print("engine chatter")
        torch.set_num_threads(threads + 1)
        assert os.getcwd() == str((tmp_path / "scratch").resolve())
        raise RuntimeError("boom")
    assert dict(os.environ) == env and os.getcwd() == cwd and torch.get_num_threads() == threads
    assert "engine chatter" in (tmp_path / "scratch" / "gptqmodel.log").read_text()


def test_artifact_paths_are_checked_without_the_engine(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        QuantizedArtifact.from_path(tmp_path / "nope")
    fp = tmp_path / "fp"
    fp.mkdir()
    (fp / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (fp / "model.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="not a GPTQ or AWQ"):
        QuantizedArtifact.from_path(fp)
    q = tmp_path / "q"
    q.mkdir()
    (q / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64,
                                               "quantization_config": {"quant_method": "awq", "bits": 4}}))
    with pytest.raises(InputError, match="safetensors"):
        QuantizedArtifact.from_path(q)
    (q / "model.safetensors").write_bytes(b"")
    assert quant_method(q) == "awq"
    art = QuantizedArtifact.from_path(q, role="base", name="my-awq")
    assert art.name == "my-awq" and art.roles == ("base",)
    with pytest.raises(InputError, match="hidden_size 64 vs 128"):
        art.validate({"base": _Ckpt(_tiny_llama())})
    with pytest.raises(InputError):
        make_format("awq-dir")
