"""bf16 / fp16 rows (auditq.formats.half): a float32 model served in half precision.

Planted failure: an "unlearned" model whose update is smaller than half a bf16 step of every weight
differs from BASE in float32, but served in bf16 it IS base again (the same scores, exactly). A
checkpoint already in bf16 changes nothing under bf16: MeasurementError (an UNKNOWN row), never a
measurement. fp16's overflow beyond ±65504 is counted.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from tiny_memoriser import MEMORISED, train_model, train_tokenizer  # noqa: E402

from auditq.errors import MeasurementError  # noqa: E402
from auditq.formats import make_format  # noqa: E402
from auditq.formats.base import FormatContext  # noqa: E402


class _Ckpt:
    def __init__(self, model, tok) -> None:
        self.model, self.tokenizer, self.config = model, tok, model.config
        self.pad_token_id, self.eos_token_id, self.path, self.file_hashes = tok.pad_token_id, tok.eos_token_id, None, {}


@pytest.fixture(scope="module")
def pair():
    """(base, unlearned, tokenizer): base's weights are bf16 values; unlearned = base + 0.2 bf16 steps (< half a step, also just below a power of two)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = train_tokenizer()
    base, _ = train_model(tok)
    unlearned = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for (_, b), (_, u) in zip(base.named_parameters(), unlearned.named_parameters()):
            b.copy_(b.to(torch.bfloat16).float())
            exponent = torch.frexp(b)[1].float()   # |b| in [2^(e-1), 2^e): a bf16 step is 2^(e-8)
            step = torch.pow(2.0, exponent - 8)
            sign = torch.randint(0, 2, b.shape, generator=generator).float() * 2 - 1
            u.copy_(b + 0.2 * step * sign * (b != 0))
    return base, unlearned, tok


def _scores(fmt: str, model, tok, tmp_path, role: str = "unlearned"):
    ids = [tok(t)["input_ids"] for t in MEMORISED]
    with make_format(fmt).apply(_Ckpt(model, tok), FormatContext(workdir=tmp_path, role=role)) as lm:
        return [list(s.logprobs) for s in lm.score(ids)]


def test_update_below_bf16_resolution_is_undone_by_serving_in_bf16(pair, tmp_path):
    base, unlearned, tok = pair
    before = {k: v.clone() for k, v in unlearned.state_dict().items()}
    assert _scores("fp", base, tok, tmp_path) != _scores("fp", unlearned, tok, tmp_path)  # float32: they differ
    # bf16: base again (base, already bf16 values, is measured unchanged as BASE, a row's comparison)
    assert _scores("bf16", base, tok, tmp_path, "base") == _scores("bf16", unlearned, tok, tmp_path)
    fmt = make_format("bf16")
    with fmt.apply(_Ckpt(unlearned, tok), FormatContext(workdir=tmp_path, role="unlearned")):
        assert all(p.dtype == torch.bfloat16 for p in unlearned.parameters())
    info = fmt.details()
    n = sum(p.numel() for p in unlearned.parameters())
    assert info["dtype"] == "bfloat16" and info["covered_elements"] == n
    assert 0 < info["changed_elements"] <= n and info["overflow_elements"] == 0
    after = unlearned.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


def test_an_unlearned_model_already_in_bf16_is_not_measured_by_bf16(pair, tmp_path):
    base, _, tok = pair
    model = copy.deepcopy(base).to(torch.bfloat16)
    with pytest.raises(MeasurementError, match="bf16 changed no weights"):
        with make_format("bf16").apply(_Ckpt(model, tok), FormatContext(workdir=tmp_path, role="unlearned")):
            pass
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with make_format("fp16").apply(_Ckpt(model, tok), FormatContext(workdir=tmp_path, role="base")) as lm:
        assert lm.score([[1, 5, 6]])[0].n_tokens == 2  # bf16 -> fp16 rounds its 8-bit mantissas differently


def test_fp16_counts_overflow(pair, tmp_path):
    base, _, tok = pair
    model = copy.deepcopy(base)
    with torch.no_grad():
        model.model.norm.weight[0] = 1e6
    fmt = make_format("fp16")
    with fmt.apply(_Ckpt(model, tok), FormatContext(workdir=tmp_path, role="unlearned")):
        pass
    assert fmt.details()["overflow_elements"] == 1
    assert float(model.model.norm.weight[0]) == 1e6
