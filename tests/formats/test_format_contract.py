"""One contract test over every registered format family (auditq.formats.FAMILIES).

Every family: an example spec parses to a Format named by its spec, details() works before any
apply and names an engine, suite_view is deterministic and never adds records. In-memory families
(no optional engine) also: apply() yields a model that scores, and leaves the checkpoint's model
exactly as it was. A new family must add an example here, or this test fails.
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

from tiny_memoriser import MEMORISED, UNSEEN, train_model, train_tokenizer  # noqa: E402

from auditq.formats import FAMILIES, make_format  # noqa: E402
from auditq.formats.base import Format, FormatContext  # noqa: E402
from auditq.formats.views import view_ids  # noqa: E402
from auditq.suite import load_suite  # noqa: E402

EXAMPLES = {
    "fp": "fp", "rtn": "rtn4:g32", "gptq": "gptq4", "awq": "awq4", "bnb": "bnb:nf4", "gguf": "gguf:q4_0",
    "fp8": "fp8", "prune": "prune:wanda:0.5", "relearn": "relearn:forget:steps=2",
}
#: families whose apply() needs no optional engine: run it on the tiny model
IN_MEMORY = ("fp", "rtn", "fp8", "prune", "relearn")


def test_every_family_has_an_example():
    assert sorted(EXAMPLES) == FAMILIES.names()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = train_tokenizer()
    model, _ = train_model(tok)
    root = tmp_path_factory.mktemp("suite")
    records = {"forget": [{"id": f"f{i}", "text": t} for i, t in enumerate(MEMORISED)],
               "retain": [{"id": f"r{i}", "text": t} for i, t in enumerate(UNSEEN)],
               "holdout": [{"id": f"h{i}", "text": t} for i, t in enumerate(UNSEEN)]}
    for name, lines in records.items():
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in lines))

    class Ckpt:
        pass

    ckpt = Ckpt()
    ckpt.model, ckpt.tokenizer, ckpt.config = model, tok, model.config
    ckpt.pad_token_id, ckpt.eos_token_id, ckpt.path, ckpt.file_hashes = tok.pad_token_id, tok.eos_token_id, root, {}
    return ckpt, load_suite(root)


@pytest.mark.parametrize("family", sorted(EXAMPLES))
def test_format_contract(family, tiny, tmp_path):
    ckpt, suite = tiny
    fmt = make_format(EXAMPLES[family])
    assert isinstance(fmt, Format) and fmt.name == EXAMPLES[family] and fmt.spec.family == family
    info = fmt.details()
    assert isinstance(info, dict) and info.get("engine")
    view = fmt.suite_view(suite, 0)
    assert view_ids(view) <= view_ids(suite) and view_ids(fmt.suite_view(suite, 0)) == view_ids(view)
    assert view.holdout == suite.holdout and view.retain == suite.retain
    if family not in IN_MEMORY:
        return
    before = {k: v.detach().clone() for k, v in ckpt.model.state_dict().items()}
    ctx = FormatContext(workdir=tmp_path, calibration_texts=UNSEEN, extra={"suite": suite, "role": "unlearned"})
    with fmt.apply(ckpt, ctx) as lm:
        scores = lm.score([[1, 5, 6, 7]])
        assert scores[0].n_tokens == 3 and bool(torch.isfinite(torch.tensor(scores[0].logprobs)).all())
    after = ckpt.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items()), family
    assert isinstance(fmt.details(), dict)
