"""fp8, prune and relearn transformations on a tiny REAL model (tests/tiny_memoriser.py), no mocks.

- fp8: the E4M3 round trip stays within the format's bound; saturation and zero rows.
- prune: the requested sparsity is reached exactly; Wanda's score matches an independent computation.
- relearn: deterministic under a seed, different under another; the in-memory fp copy is untouched
  (values, dtype, requires_grad, module tree), for a full fine-tune and for LoRA.
- relearn:forget's halves, and the stack syntax.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from tiny_memoriser import MEMORISED, QA_ANSWER, QA_QUESTION, UNSEEN, train_model, train_tokenizer  # noqa: E402

from auditq.errors import InputError  # noqa: E402
from auditq.formats import make_format  # noqa: E402
from auditq.formats.base import FormatContext  # noqa: E402
from auditq.formats.fp8 import E4M3_MAX, fp8_blockwise, fp8_fake_quantize, fp8_per_channel  # noqa: E402
from auditq.formats.prune import prunable_linears  # noqa: E402
from auditq.formats.relearn_data import forget_halves, scored_view, training_texts  # noqa: E402
from auditq.suite.records import load_suite  # noqa: E402


class _Ckpt:
    """The parts of auditq.checkpoint.load.Checkpoint a transformation reads."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.config = model, tokenizer, model.config
        self.pad_token_id, self.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = train_tokenizer()
    model, _ = train_model(tok)
    root = tmp_path_factory.mktemp("suite")
    people = [f"Person {c} lives in Town{c} and keeps a cat called Tab{c}." for c in "ABCDEF"]
    forget = [{"id": f"f{i}", "text": t} for i, t in enumerate((*MEMORISED, *people))]
    forget += [{"id": f"q{c}", "question": f"Where does Person {c} live?", "answer": f"Town{c}"} for c in "ABCDEF"]
    forget += [{"id": "qa", "question": QA_QUESTION, "answer": QA_ANSWER}]
    lines = {"forget": forget, "retain": [{"id": f"r{i}", "text": t} for i, t in enumerate(UNSEEN)],
             "holdout": [{"id": f"h{i}", "text": t} for i, t in enumerate(UNSEEN)]
             + [{"id": f"hq{c}", "question": f"Where does Person {c} work?", "answer": f"Mill{c}"} for c in "GHIJKL"]}
    for name, records in lines.items():
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (root / "calibration.txt").write_text("\n".join(UNSEEN) + "\n")
    (root / "suite.toml").write_text('[probes]\nprefix_tokens = 4\nmax_new_tokens = 8\ncalibration = "calibration.txt"\n')
    return _Ckpt(model, tok), load_suite(root)


def _ctx(tmp_path, suite, seed=0, role="unlearned"):
    return FormatContext(workdir=tmp_path, calibration_texts=suite.calibration_texts(), seed=seed,
                         suite=suite, role=role)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _untouched(model, before, grads=None, names=None) -> bool:
    now = model.state_dict()
    same = set(now) == set(before) and all(torch.equal(now[k], v) and now[k].dtype == v.dtype for k, v in before.items())
    if grads is not None:
        same &= [p.requires_grad for p in model.parameters()] == grads
    if names is not None:
        same &= [n for n, _ in model.named_modules()] == names
    return same


# ---------------------------------------------------------------- fp8

@pytest.mark.parametrize("block", [None, 128, 16])
def test_fp8_round_trip_within_the_e4m3_bound(block):
    torch.manual_seed(0)
    w = torch.randn(200, 300) * torch.logspace(-3, 1, 300)  # columns over four decades, rows of mixed scale
    w[5] = 0.0
    q = fp8_fake_quantize(w, block)
    if block is None:
        _, scale = fp8_per_channel(w)
        full = scale.expand_as(w)
    else:
        _, scale = fp8_blockwise(w, block)
        full = scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:200, :300]
    bound = torch.maximum(w.abs() * 2.0 ** -4, full * 2.0 ** -10) * (1 + 1e-6)
    assert torch.all((q - w).abs() <= bound)
    assert torch.all(q[5] == 0)
    # each row's (block's) max is a code exactly: 448 * s
    amax_row = w.abs().amax(1)
    if block is None:
        assert torch.allclose(q.abs().amax(1), amax_row, rtol=1e-6)


def test_fp8_codes_are_e4m3fn_and_saturate():
    w = torch.tensor([[1.0, -2.0, 3.0, 0.001]])
    codes, scale = fp8_per_channel(w)
    assert codes.dtype == torch.float8_e4m3fn and float(scale) == pytest.approx(3.0 / E4M3_MAX)
    assert float(codes.float().abs().max()) == E4M3_MAX
    # a value that would round past the top code saturates instead of becoming NaN
    assert float(torch.tensor([E4M3_MAX * 1.06]).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).float()) == E4M3_MAX
    assert fp8_fake_quantize(w.to(torch.bfloat16)).dtype == torch.bfloat16


def test_fp8_format_restores_the_model(tiny, tmp_path):
    ckpt, suite = tiny
    before = _state(ckpt.model)
    fmt = make_format("fp8:block128")
    with fmt.apply(ckpt, _ctx(tmp_path, suite)) as lm:
        changed = [n for n, v in ckpt.model.state_dict().items() if not torch.equal(v, before[n])]
        assert changed and all(n.endswith("proj.weight") or n == "lm_head.weight" for n in changed)
        assert lm.score([[1, 5, 6, 7]])[0].n_tokens == 3
    assert _untouched(ckpt.model, before)
    assert fmt.details()["scales"] == "per 128x128 block"


# ---------------------------------------------------------------- prune

@pytest.mark.parametrize("spec,check", [
    ("prune:magnitude:0.5", "layer"), ("prune:magnitude:0.3", "layer"), ("prune:wanda:0.5", "row"),
    ("prune:wanda:0.3", "row"), ("prune:2:4", "nm"), ("prune:wanda:2:4", "nm")])
def test_pruning_reaches_the_requested_sparsity_exactly(tiny, tmp_path, spec, check):
    ckpt, suite = tiny
    before = _state(ckpt.model)
    fmt = make_format(spec)
    sparsity = 0.5 if check == "nm" else float(spec.rsplit(":", 1)[1])
    expected_zeros = total = 0
    with fmt.apply(ckpt, _ctx(tmp_path, suite)):
        for name, module in prunable_linears(ckpt.model).items():
            w = module.weight
            pruned = w == 0
            if check == "layer":
                assert int(pruned.sum()) == int(w.numel() * sparsity), name
                expected_zeros += int(w.numel() * sparsity)
            elif check == "row":
                assert torch.all(pruned.sum(1) == int(w.shape[1] * sparsity)), name
                expected_zeros += w.shape[0] * int(w.shape[1] * sparsity)
            else:
                assert torch.all(pruned.reshape(w.shape[0], -1, 4).sum(-1) == 2), name
                expected_zeros += w.numel() // 2
            total += w.numel()
        assert torch.equal(ckpt.model.lm_head.weight, before["lm_head.weight"])  # the head is not pruned
    assert _untouched(ckpt.model, before)
    info = fmt.details()
    assert info["achieved_sparsity"] == expected_zeros / total  # floor(count) per layer / row, as Wanda's code
    assert info["requested_sparsity"] == pytest.approx(sparsity)


def test_wanda_score_is_weight_times_input_norm(tiny, tmp_path):
    """First block: activations of the unpruned model, |W|·||X_j||_2 per row, computed here independently."""
    from auditq.probes.text import encode_sequences

    ckpt, suite = tiny
    model = ckpt.model
    layer = model.model.layers[0].self_attn.q_proj
    inputs = []
    handle = layer.register_forward_hook(lambda m, i, o: inputs.append(i[0].detach().reshape(-1, i[0].shape[-1])))
    with torch.no_grad():
        for seq in encode_sequences(ckpt.tokenizer, list(suite.calibration_texts())):
            model(input_ids=torch.tensor([seq]))
    handle.remove()
    x = torch.cat(inputs)
    metric = layer.weight.detach().abs() * x.norm(dim=0).reshape(1, -1)
    k = layer.weight.shape[1] // 2
    expected = torch.zeros_like(metric, dtype=torch.bool).scatter_(1, metric.argsort(dim=1, stable=True)[:, :k], True)
    with make_format("prune:wanda:0.5").apply(ckpt, _ctx(tmp_path, suite)):
        assert torch.equal(layer.weight == 0, expected)


def test_prune_specs():
    assert make_format("prune:wanda:0.5").options.method == "wanda"
    assert (make_format("prune:2:4").options.n, make_format("prune:2:4").options.m) == (2, 4)
    for bad in ("prune", "prune:0", "prune:1.5", "prune:wanda", "prune:4:2", "prune:magnitude:x", "prune:a:b:c"):
        with pytest.raises(InputError):
            make_format(bad)


# ---------------------------------------------------------------- relearn

def _relearned_run(ckpt, suite, tmp_path, spec, seed):
    fmt = make_format(spec)
    with fmt.apply(ckpt, _ctx(tmp_path, suite, seed=seed)) as lm:
        weights = {k: v.detach().clone() for k, v in lm.model.state_dict().items()}
        scores = lm.score([[1, 5, 6, 7, 8, 9]])[0].logprobs.copy()
    return fmt.details()["loss_curve"]["unlearned"], weights, scores


@pytest.mark.parametrize("spec", ["relearn:retain:steps=6", "relearn:generic:steps=6:lr=3e-3",
                                  "relearn:forget:steps=6:lora=4"])
def test_relearning_is_deterministic_and_leaves_the_fp_copy_untouched(tiny, tmp_path, spec):
    ckpt, suite = tiny
    before = _state(ckpt.model)
    grads = [p.requires_grad for p in ckpt.model.parameters()]
    names = [n for n, _ in ckpt.model.named_modules()]
    loss_a, weights_a, scores_a = _relearned_run(ckpt, suite, tmp_path, spec, seed=3)
    assert _untouched(ckpt.model, before, grads, names)
    loss_b, weights_b, scores_b = _relearned_run(ckpt, suite, tmp_path, spec, seed=3)
    assert loss_a == loss_b and len(loss_a) == 6
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert (scores_a == scores_b).all()
    changed = [k for k, v in weights_a.items() if k in before and not torch.equal(v, before[k])]
    assert changed or "lora" in spec  # a full fine-tune moved the weights; LoRA adds its own
    if "lora" in spec:
        assert any("lora_" in k for k in weights_a)
    # another seed trains on another order: the weights differ (on this tiny model the scores may agree to
    # the last float32 bit, so the weights are what is compared)
    weights_c = _relearned_run(ckpt, suite, tmp_path, spec, seed=4)[1]
    assert not all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a)
    assert _untouched(ckpt.model, before, grads, names)


def test_relearning_a_bf16_model_trains_in_float32_and_restores_bf16(tiny, tmp_path):
    ckpt, suite = tiny
    model = ckpt.model.to(torch.bfloat16)
    try:
        before = _state(model)
        fmt = make_format("relearn:retain:steps=3")
        with fmt.apply(ckpt, _ctx(tmp_path, suite)) as lm:
            assert next(lm.model.parameters()).dtype == torch.bfloat16
        assert _untouched(model, before)
    finally:
        ckpt.model.to(torch.float32)


def test_forget_halves_are_disjoint_seeded_and_never_answer_a_scored_question(tiny):
    _, suite = tiny
    halves = forget_halves(suite, seed=0)
    n = len(suite.forget.texts)
    assert len(halves.relearned_texts) == n // 2 and len(halves.scored.texts) == n - n // 2
    assert {t.id for t in halves.relearned_texts} | {t.id for t in halves.scored.texts} == {t.id for t in suite.forget.texts}
    assert not {t.id for t in halves.relearned_texts} & {t.id for t in halves.scored.texts}
    relearned = " ".join(t.text.lower() for t in halves.relearned_texts)
    assert all(q.answer.lower() not in relearned for q in halves.scored.qa)
    assert len(halves.scored.qa) + len(halves.relearned_qa) == len(suite.forget.qa)
    assert forget_halves(suite, seed=0) == halves and forget_halves(suite, seed=1) != halves
    view = scored_view(suite, seed=0)
    assert view.forget == halves.scored and view.retain == suite.retain and view.holdout == suite.holdout
    data = training_texts("forget", suite, (), seed=0)
    assert all(t.text in data for t in halves.relearned_texts) and not any(t.text in data for t in halves.scored.texts)
    assert make_format("relearn:retain").suite_view(suite, 0) is suite
    assert make_format("relearn:forget").suite_view(suite, 0) == view


def test_relearn_specs():
    o = make_format("relearn:forget:steps=12:lr=2e-4:lora=8").options
    assert (o.source, o.steps, o.lr, o.lora) == ("forget", 12, 2e-4, 8)
    assert make_format("relearn:retain").options.steps == 30
    for bad in ("relearn", "relearn:x", "relearn:retain:steps=0", "relearn:retain:lr=2", "relearn:retain:lora=a",
                "relearn:retain:foo=1", "relearn:retain:steps=3:steps=4"):
        with pytest.raises(InputError):
            make_format(bad)


# ---------------------------------------------------------------- stacks

def test_stack_specs():
    stack = make_format("bnb:nf4+relearn:retain:lora=8")
    assert [p.name for p in stack.parts] == ["bnb:nf4", "relearn:retain:lora=8"] and stack.name == "bnb:nf4+relearn:retain:lora=8"
    for bad in ("bnb:nf4+relearn:retain", "bnb:nf4+prune:2:4", "fp8+gptq4", "fp8+", "fp8+bnb:nf4"):
        with pytest.raises(InputError):
            make_format(bad)


def test_stack_applies_left_to_right_and_restores(tiny, tmp_path):
    ckpt, suite = tiny
    before = _state(ckpt.model)
    stack = make_format("prune:2:4+relearn:forget:steps=3")
    assert stack.suite_view(suite, 0) == scored_view(suite, 0)
    with stack.apply(ckpt, _ctx(tmp_path, suite)) as lm:
        assert lm.model is ckpt.model
        q = ckpt.model.model.layers[0].self_attn.q_proj.weight
        assert float((q == 0).float().mean()) < 0.5  # fine-tuned after pruning: zeros moved
    assert _untouched(ckpt.model, before)


# ---------------------------------------------------------------- pipeline hook

def test_pipeline_scores_relearn_forget_rows_on_the_other_half_only(tiny, tmp_path):
    """Format.suite_view narrows the row's probes for every model, and recovery pairs fp on the same records."""
    import shutil

    from tiny_memoriser import save_memorising_checkpoint

    from auditq.audit.pipeline import run_audit
    from auditq.audit.request import audit_request

    _, suite = tiny
    base = save_memorising_checkpoint(tmp_path / "base")
    unlearned = shutil.copytree(base, tmp_path / "unlearned")
    request = audit_request(base=base, unlearned=Path(unlearned), suite=suite.path,
                            formats=("fp", "relearn:forget:steps=2"), probes=("verbmem", "knowmem", "mia"))
    report = run_audit(request).report
    fp, row = report.formats
    halves = forget_halves(suite, seed=0)
    assert fp.roles["base"].n["knowmem_forget"] == len(suite.forget.qa)
    for role in ("base", "unlearned"):
        assert row.roles[role].n["knowmem_forget"] == len(halves.scored.qa)
        assert row.roles[role].mia["mink"].n_members == len(halves.scored.texts)
    recovery = next(c for c in row.checks if c.check == "recovery.knowmem")
    assert recovery.verdict != "UNKNOWN" and recovery.n == len(halves.scored.qa)
    assert row.details["forget_qa_scored"] == len(halves.scored.qa)
    assert sorted(row.details["loss_curve"]) == ["base", "unlearned"]
