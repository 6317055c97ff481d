"""Linear layers of every kind: GPT-2's Conv1D, Llama's separate q/k/v, Phi-3's fused qkv_proj (real tiny models).

Every transformed weight is compared with an independent implementation written here (not auditq's
helpers): RTN per output channel / per group along the INPUT dimension, vLLM's per-tensor fp8 over the
fused q/k/v and gate/up tensors, llm-compressor's per-output-channel fp8, magnitude / Wanda / 2:4 pruning.
A transformation that covers nothing or changes nothing raises MeasurementError (an UNKNOWN row).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from formats.gguf_helpers import CORPUS, build_gpt2_checkpoint  # noqa: E402

from auditq.errors import MeasurementError  # noqa: E402
from auditq.formats import make_format  # noqa: E402
from auditq.formats.base import FormatContext  # noqa: E402
from auditq.formats.linear_layers import linear_layers  # noqa: E402

GPT2_LAYERS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


class _Ckpt:
    """The parts of auditq.checkpoint.load.Checkpoint a transformation reads (weights restored by cloning)."""

    def __init__(self, model, tokenizer=None):
        self.model, self.tokenizer, self.config = model, tokenizer, model.config
        self.pad_token_id = getattr(tokenizer, "pad_token_id", 0) if tokenizer is not None else 0
        self.eos_token_id = getattr(tokenizer, "eos_token_id", 1) if tokenizer is not None else 1


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    torch.set_num_threads(1)
    from auditq.checkpoint.load import load_checkpoint

    path = build_gpt2_checkpoint(tmp_path_factory.mktemp("gpt2") / "base")
    return load_checkpoint(path, "base")


def _ctx(tmp_path, role="base", calibration=()):
    return FormatContext(workdir=tmp_path, calibration_texts=tuple(calibration), extra={"role": role})


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------ independent implementations (stored layouts)

def rtn_reference(stored: torch.Tensor, bits: int, group: int | None, conv1d: bool) -> torch.Tensor:
    """RTN of the paper per output channel (or groups of `group` input features), on the STORED tensor."""
    w = stored.double()
    w = w if conv1d else w.t()  # now (in, out): each column is one output channel, rows run along the input
    n_in = w.shape[0]
    size = n_in if group is None else group
    out = torch.empty_like(w)
    for start in range(0, n_in, size):
        block = w[start:start + size]
        delta = block.abs().amax(dim=0, keepdim=True) / 2 ** (bits - 1)
        safe = torch.where(delta > 0, delta, torch.ones_like(delta))
        codes = torch.round(block / safe).clamp(-2 ** (bits - 1), 2 ** (bits - 1) - 1)
        out[start:start + size] = torch.where(delta > 0, codes * delta, torch.zeros_like(block))
    out = out if conv1d else out.t()
    return out.to(stored.dtype)


def fp8_tensor_reference(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """vLLM scaled_fp8_quant(w, scale=None) of the fused weight: s = amax / 448, e4m3(clamp(w * (1/s)))."""
    amax = torch.cat([t.float().reshape(-1) for t in tensors]).abs().max()
    scale = amax / 448.0
    inv = 1.0 / scale
    return [((t.float() * inv).clamp(-448, 448).to(torch.float8_e4m3fn).float() * scale).to(t.dtype) for t in tensors]


def fp8_channel_reference(stored: torch.Tensor, conv1d: bool) -> torch.Tensor:
    """compressed-tensors' FP8_DYNAMIC weight: one scale per OUTPUT channel (a stored column of a Conv1D)."""
    w = stored.float()
    dim = 0 if conv1d else 1
    scale = (w.abs().amax(dim=dim, keepdim=True) / 448.0).clamp(min=torch.finfo(torch.float32).eps)
    return ((w / scale).clamp(-448, 448).to(torch.float8_e4m3fn).float() * scale).to(stored.dtype)


# ------------------------------------------------------------ GPT-2 (Conv1D, tied head)

def test_gpt2_lists_every_conv1d_weight_and_leaves_the_tied_head(gpt2):
    layers = linear_layers(gpt2.model)
    names = {lw.name for lw in layers}
    assert names == {f"transformer.h.{i}.{n}.weight" for i in range(2) for n in GPT2_LAYERS}
    assert all(lw.kind == "Conv1D" and lw.transposed for lw in layers)
    assert "lm_head.weight" in {lw.name for lw in linear_layers(gpt2.model, head="all")}


@pytest.mark.parametrize("spec,bits,group", [("rtn4", 4, None), ("rtn4:g32", 4, 32), ("rtn8", 8, None)])
def test_rtn_quantizes_every_conv1d_weight_along_its_input(gpt2, tmp_path, spec, bits, group):
    model = gpt2.model
    before = _state(model)
    fmt = make_format(spec)
    with fmt.apply(gpt2, _ctx(tmp_path)):
        now = model.state_dict()
        for i in range(2):
            for n in GPT2_LAYERS:
                name = f"transformer.h.{i}.{n}.weight"
                expected = rtn_reference(before[name], bits, group, conv1d=True)
                assert torch.equal(now[name], expected), name
                assert not torch.equal(now[name], before[name]), name
        untouched = [k for k in before if not any(k.endswith(f"{n}.weight") for n in GPT2_LAYERS)]
        assert all(torch.equal(now[k], before[k]) for k in untouched)  # embeddings (tied head), norms, biases
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    info = fmt.details()
    assert info["covered_tensors"] == 8 and info["changed_tensors"] == 8 and info["changed_elements"] > 0
    assert 0 < info["covered_parameters_share"] < 1 and info["layer_types"] == {"Conv1D": 8}


def test_rtn_changes_gpt2_scores(gpt2, tmp_path):
    """BASE's per-sample log-probs at rtn4 differ from fp's (on today's main they were identical)."""
    from auditq.probes.text import encode_sequences

    seqs = encode_sequences(gpt2.tokenizer, list(CORPUS))
    with make_format("fp").apply(gpt2, _ctx(tmp_path)) as lm:
        fp = [s.logprobs.copy() for s in lm.score(seqs)]
    with make_format("rtn4").apply(gpt2, _ctx(tmp_path)) as lm:
        q = [s.logprobs.copy() for s in lm.score(seqs)]
    differ = sum(not np.array_equal(a, b) for a, b in zip(fp, q))
    assert differ == len(seqs)


@pytest.mark.parametrize("spec", ["fp8", "fp8:channel"])
def test_fp8_on_gpt2_equals_each_engines_scheme(gpt2, tmp_path, spec):
    model = gpt2.model
    before = _state(model)
    with make_format(spec).apply(gpt2, _ctx(tmp_path)):
        now = model.state_dict()
        for i in range(2):
            for n in GPT2_LAYERS:  # c_attn is one fused tensor already: one scale for q, k and v
                name = f"transformer.h.{i}.{n}.weight"
                expected = fp8_tensor_reference([before[name]])[0] if spec == "fp8" else \
                    fp8_channel_reference(before[name], conv1d=True)
                assert torch.equal(now[name], expected), name
        assert torch.equal(now["lm_head.weight"], before["lm_head.weight"])


def test_rtn_codes_of_conv1d_are_recorded_in_hf_element_order(gpt2, tmp_path):
    from auditq.formats.code_recorder import codes_dir, read_index

    with make_format("rtn4:g32").apply(gpt2, _ctx(tmp_path, role="base")):
        pass
    root = codes_dir(tmp_path, "rtn4:g32", "base")
    index = read_index(root)
    assert len(index) == 8
    name = "transformer.h.0.mlp.c_fc.weight"
    stored = gpt2.model.state_dict()[name].double()
    with np.load(root / index[name]["file"], allow_pickle=False) as data:
        codes, step, group_of_row = data["codes"], data["step"], data["group_of_row"]
    assert codes.shape == tuple(stored.shape)
    full_step = step[group_of_row, :]  # (in, out): the step of each stored element
    np.testing.assert_allclose(codes * full_step, rtn_reference(stored, 4, 32, conv1d=True).numpy(), rtol=0, atol=1e-6)


def test_weight_evidence_counts_conv1d_codes(gpt2, tmp_path):
    """Two GPT-2 checkpoints that differ in one Conv1D weight: the evidence counts every code and finds the change."""
    from safetensors.torch import load_file, save_file

    from auditq.audit.evidence import compute_evidence
    from auditq.checkpoint.load import load_checkpoint

    base_dir = Path(gpt2.path)
    unl_dir = tmp_path / "unlearned"
    import shutil

    shutil.copytree(base_dir, unl_dir)
    tensors = load_file(str(unl_dir / "model.safetensors"))
    name = "transformer.h.1.attn.c_proj.weight"
    tensors[name] = tensors[name] + 0.6 * tensors[name].abs().amax(dim=0, keepdim=True) / 8 * torch.sign(tensors[name])
    save_file(tensors, str(unl_dir / "model.safetensors"), metadata={"format": "pt"})
    unlearned = load_checkpoint(unl_dir, "unlearned")
    for role, ckpt in (("base", gpt2), ("unlearned", unlearned)):
        with make_format("rtn4").apply(ckpt, _ctx(tmp_path, role=role)):
            pass
    evidence = compute_evidence(tmp_path, "rtn4", {"base": base_dir, "unlearned": unl_dir})
    n = sum(lw.numel for lw in linear_layers(gpt2.model))
    assert evidence["codes_compared"] == n and evidence["tensors_compared"] == 8
    assert evidence["tensors_identical"] == 7 and evidence["per_tensor"][name]["codes_equal_share"] < 0.9
    assert evidence["per_tensor"]["transformer.h.0.attn.c_attn.weight"]["mean_abs_delta_steps"] == 0.0
    assert 0.3 < evidence["per_tensor"][name]["mean_abs_delta_steps"] < 0.9  # moved ~0.6 steps, in BASE's steps


def _pruned_reference(stored: torch.Tensor, spec: str, norms: torch.Tensor | None = None) -> torch.Tensor:
    """Pruning on the (out, in) matrix of a Conv1D (its stored transpose), written independently."""
    w = stored.t().clone()  # (out, in)
    metric = w.abs() if norms is None else w.abs() * norms.reshape(1, -1)
    if spec.endswith("2:4"):
        groups = metric.reshape(w.shape[0], -1, 4)
        idx = groups.argsort(dim=-1, stable=True)[..., :2]
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True).reshape(w.shape)
    elif norms is not None:  # wanda: per output row
        k = w.shape[1] // 2
        mask = torch.zeros_like(w, dtype=torch.bool).scatter_(1, metric.argsort(dim=1, stable=True)[:, :k], True)
    else:  # magnitude: per layer
        k = w.numel() // 2
        mask = torch.zeros(w.numel(), dtype=torch.bool).scatter_(0, metric.reshape(-1).argsort(stable=True)[:k], True)
        mask = mask.reshape(w.shape)
    return w.masked_fill(mask, 0).t()


@pytest.mark.parametrize("spec", ["prune:magnitude:0.5", "prune:2:4", "prune:wanda:0.5"])
def test_pruning_gpt2_equals_an_independent_implementation(gpt2, tmp_path, spec):
    from auditq.probes.text import encode_sequences

    model = gpt2.model
    before = _state(model)
    first = model.transformer.h[0]
    norms = {}
    if "wanda" in spec:  # first block: activations of the unpruned model, per input feature
        inputs = {n: [] for n in GPT2_LAYERS}
        hooks = [first.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: inputs[n].append(i[0].detach().reshape(-1, i[0].shape[-1]))) for n in GPT2_LAYERS]
        with torch.no_grad():
            for seq in encode_sequences(gpt2.tokenizer, list(CORPUS)):
                model(input_ids=torch.tensor([seq]))
        for h in hooks:
            h.remove()
        norms = {n: torch.cat(v).float().norm(dim=0) for n, v in inputs.items()}
    fmt = make_format(spec)
    with fmt.apply(gpt2, _ctx(tmp_path, calibration=CORPUS)):
        now = model.state_dict()
        blocks = [0] if "wanda" in spec else [0, 1]  # wanda's later blocks see the pruned earlier ones
        for i in blocks:
            for n in GPT2_LAYERS:
                name = f"transformer.h.{i}.{n}.weight"
                expected = _pruned_reference(before[name], spec, norms.get(n))
                assert torch.equal(now[name], expected), name
        for i in range(2):
            for n in GPT2_LAYERS:
                assert float((now[f"transformer.h.{i}.{n}.weight"] == 0).float().mean()) == 0.5
        assert torch.equal(now["lm_head.weight"], before["lm_head.weight"])
    info = fmt.details()
    assert info["changed_tensors"] == 8 and info["achieved_sparsity"] == 0.5
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


# ------------------------------------------------------------ Llama (separate q/k/v, gate/up) and Phi-3 (fused)

def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _phi3():
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(0)
    config = Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return Phi3ForCausalLM(config).eval()


def test_fp8_llama_shares_one_scale_over_fused_qkv_and_gate_up(tmp_path):
    model = _llama()
    with torch.no_grad():  # make q, k, v (and gate, up) very different in range: a per-tensor scale each would differ
        model.model.layers[0].self_attn.k_proj.weight.mul_(20)
        model.model.layers[1].mlp.up_proj.weight.mul_(7)
    before = _state(model)
    ckpt = _Ckpt(model)
    with make_format("fp8").apply(ckpt, _ctx(tmp_path)):
        now = model.state_dict()
        for i in range(2):
            p = f"model.layers.{i}."
            groups = [[p + f"self_attn.{n}_proj.weight" for n in "qkv"], [p + "self_attn.o_proj.weight"],
                      [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"], [p + "mlp.down_proj.weight"]]
            for names in groups:
                for name, expected in zip(names, fp8_tensor_reference([before[n] for n in names])):
                    assert torch.equal(now[name], expected), name
            # the fused scale is not each tensor's own one
            own = fp8_tensor_reference([before[p + "self_attn.q_proj.weight"]])[0]
            assert i == 1 or not torch.equal(now[p + "self_attn.q_proj.weight"], own)
        assert torch.equal(now["lm_head.weight"], before["lm_head.weight"])  # vLLM leaves the head unquantized
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("spec", ["fp8", "fp8:channel"])
def test_fp8_phi3_fused_tensors(tmp_path, spec):
    model = _phi3()
    before = _state(model)
    with make_format(spec).apply(_Ckpt(model), _ctx(tmp_path)):
        now = model.state_dict()
        for i in range(2):
            for n in ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"):
                name = f"model.layers.{i}.{n}.weight"
                expected = fp8_tensor_reference([before[name]])[0] if spec == "fp8" else \
                    fp8_channel_reference(before[name], conv1d=False)
                assert torch.equal(now[name], expected), name


def test_fp8_channel_on_llama_is_per_output_row(tmp_path):
    model = _llama()
    before = _state(model)
    with make_format("fp8:channel").apply(_Ckpt(model), _ctx(tmp_path)):
        name = "model.layers.0.self_attn.k_proj.weight"
        assert torch.equal(model.state_dict()[name], fp8_channel_reference(before[name], conv1d=False))


# ------------------------------------------------------------ nothing covered / nothing changed

class _OddProj(torch.nn.Module):
    """A layer type auditq does not know: a 2-D weight that is neither nn.Linear nor Conv1D."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone())
        self.bias = torch.nn.Parameter(bias.clone())

    def forward(self, x):
        return x @ self.weight + self.bias


@pytest.mark.parametrize("spec", ["rtn4", "fp8", "prune:magnitude:0.5"])
def test_an_unknown_layer_type_is_refused_naming_it(spec, tmp_path):
    model = _llama()
    proj = model.model.layers[0].mlp.down_proj
    model.model.layers[0].mlp.down_proj = _OddProj(proj.weight.t(), torch.zeros(proj.out_features))
    before = _state(model)
    with pytest.raises(MeasurementError, match=f"{spec} cannot transform _OddProj"):
        with make_format(spec).apply(_Ckpt(model), _ctx(tmp_path)):
            pass
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_a_format_that_covers_nothing_is_refused(tmp_path):
    class HeadOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"max_position_embeddings": 8})()
            self.embed = torch.nn.Embedding(10, 4)
            self.lm_head = torch.nn.Linear(4, 10, bias=False)

        def get_input_embeddings(self):
            return self.embed

        def get_output_embeddings(self):
            return self.lm_head

    model = HeadOnly()
    with pytest.raises(MeasurementError, match="rtn4:nohead covers no weights"):
        with make_format("rtn4:nohead").apply(_Ckpt(model), _ctx(tmp_path)):
            pass
    with pytest.raises(MeasurementError, match="fp8 covers no weights"):  # fp8 leaves the head alone, like vLLM
        with make_format("fp8").apply(_Ckpt(model), _ctx(tmp_path)):
            pass


def test_pruning_an_already_pruned_model_changed_nothing(tmp_path):
    model = _llama()
    ckpt = _Ckpt(model)
    fmt = make_format("prune:2:4")
    with fmt.apply(ckpt, _ctx(tmp_path)):
        pruned = _state(model)
    model.load_state_dict(pruned)  # the checkpoint is now 2:4-sparse already
    with pytest.raises(MeasurementError, match="prune:2:4 changed no weights of this model"):
        with make_format("prune:2:4").apply(ckpt, _ctx(tmp_path)):
            pass
    assert all(torch.equal(model.state_dict()[k], v) for k, v in pruned.items())


def test_rtn_emb_on_gpt2_lists_the_tied_embedding_once_by_its_stored_name(gpt2):
    from auditq.formats.rtn import quantizable_layers

    names = [lw.name for lw in quantizable_layers(gpt2.model, include_embeddings=True, include_head=True)]
    assert len(names) == len(set(names)) == 8 + 2  # 8 Conv1D, wte (which is also the head), wpe
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names  # the name the safetensors file holds
    assert len(quantizable_layers(gpt2.model, include_embeddings=False, include_head=True)) == 8
