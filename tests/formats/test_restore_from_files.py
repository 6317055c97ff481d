"""fp8, prune and relearn put the weights back from the checkpoint's safetensors files (auditq.checkpoint.restore).

No clone of the model is kept while they run: `modified_weights` re-reads each tensor from its
file. Checked on a real checkpoint loaded from disk (float32 and bfloat16, tied and untied head):
after each transformation every tensor, dtype and requires_grad flag equals a fresh load.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from formats.gguf_helpers import build_llama_checkpoint  # noqa: E402

from auditq.checkpoint.load import load_checkpoint  # noqa: E402
from auditq.formats import FormatContext, make_format  # noqa: E402
from auditq.suite.records import bundled_suite_dir, load_suite  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return build_llama_checkpoint(tmp_path_factory.mktemp("ckpt") / "m", hidden=64, intermediate=128, tied=True)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("spec", ["fp8", "prune:magnitude:0.5", "prune:wanda:2:4", "relearn:retain:steps=2",
                                  "relearn:retain:steps=2:lora=4"])
def test_transformation_restores_from_the_files(checkpoint_dir, tmp_path, spec, dtype):
    suite = load_suite(bundled_suite_dir())
    ckpt = load_checkpoint(checkpoint_dir, "base", dtype=dtype, lazy=True)
    before = _snapshot(ckpt.model)
    grads = [p.requires_grad for p in ckpt.model.parameters()]
    assert ckpt.weights_from_files
    ctx = FormatContext(workdir=tmp_path, calibration_texts=suite.calibration_texts()[:8],
                        suite=suite, role="base")
    fmt = make_format(spec)
    with fmt.apply(ckpt, ctx) as lm:
        assert lm.score([[1, 5, 6, 7]])[0].n_tokens == 3
        if "lora" not in spec:  # the transformation did change the resident weights
            assert any(not torch.equal(v, before[k]) for k, v in ckpt.model.state_dict().items())
    after = ckpt.model.state_dict()
    assert set(after) == set(before)
    for name, value in before.items():
        assert after[name].dtype == value.dtype and torch.equal(after[name], value), name
    assert [p.requires_grad for p in ckpt.model.parameters()] == grads
    assert not ckpt.model.training
