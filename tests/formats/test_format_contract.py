"""One contract test over every registered format family (auditq.formats.FAMILIES).

Every family: an example spec parses to a Format named by its spec, details() works before any
apply and names an engine, suite_view is deterministic and never adds records. In-memory families
(no optional engine) also: apply() yields a model that scores, and leaves the checkpoint's model
exactly as it was. A new family must add an example here, or this test fails.

Every family also registers a torch-free option parser (auditq.formats.OPTIONS): good and bad specs of
every family parse in a subprocess that never imports torch or a family module (the validation stage
refuses a bad `-f` before any heavy import), and the Format built by make_format carries exactly what
that parser returned.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from tiny_memoriser import MEMORISED, UNSEEN, train_model, train_tokenizer  # noqa: E402

from auditq.errors import InputError  # noqa: E402
from auditq.formats import FAMILIES, OPTIONS, make_format, parse_format  # noqa: E402
from auditq.formats.base import Format, FormatContext  # noqa: E402
from auditq.formats.views import view_ids  # noqa: E402
from auditq.suite.records import load_suite  # noqa: E402

EXAMPLES = {
    "fp": "fp", "rtn": "rtn4:g32", "gptq": "gptq4", "awq": "awq4", "bnb": "bnb:nf4", "gguf": "gguf:q4_0",
    "fp8": "fp8", "prune": "prune:wanda:0.5", "relearn": "relearn:forget:steps=2", "bf16": "bf16", "fp16": "fp16",
}
#: families whose apply() needs no optional engine: run it on the tiny model
IN_MEMORY = ("fp", "rtn", "fp8", "prune", "relearn", "bf16", "fp16")
#: more good specs and bad ones per family (a bad one: InputError naming it), and stacks
GOOD = {
    "fp": [], "rtn": ["rtn8", "rtn3:g64:emb:nohead"], "gptq": ["gptq8:g128:act:dequant"], "awq": ["awq4:g64:dequant"],
    "bnb": ["bnb:int8", "bnb:fp4:dq"], "gguf": ["gguf:q4_k_m", "gguf:f32"],
    "fp8": ["fp8:block128", "fp8:channel", "fp8:tensor"],
    "prune": ["prune:2:4", "prune:magnitude:0.3"], "relearn": ["relearn:retain:steps=3:lr=1e-4:lora=8:batch=2", "relearn:lucki",
                                                                 "relearn:uds", "relearn:deeb"],
    "bf16": ["BF16"], "fp16": [" fp16 "],
    "stack": ["bnb:nf4+relearn:retain:lora=8", "bnb:nf4+relearn:lucki", "prune:2:4+relearn:forget:steps=3", "rtn4+fp8"],
}
BAD = {
    "fp": ["fp:g1", "fp4"], "rtn": ["rtn", "rtn9", "rtn4:g0", "rtn4:wat", "rtn4:g32:g64"],
    "gptq": ["gptq5", "gptq4:g7", "gptq4:g0", "gptq4:x"], "awq": ["awq8", "awq4:act"],
    "bnb": ["bnb", "bnb:nf5", "bnb:int8:dq", "bnb:nf4:dq:dq"], "gguf": ["gguf", "gguf:q9_z", "gguf:q4_0:x"],
    "fp8": ["fp8:block0", "fp8:x", "fp8:channel:block128", "fp8:channel:channel", "fp8:chan"],
    "prune": ["prune", "prune:1.5", "prune:4:2", "prune:wanda:x"],
    "relearn": ["relearn", "relearn:x", "relearn:retain:lr=2", "relearn:retain:steps=0", "relearn:retain:lr=nan",
                "relearn:lucki:lr=1e-3", "relearn:forget_all"],
    "bf16": ["bf16:x", "bf8", "bf16:g32"], "fp16": ["fp16:emb", "fp16:x:y"],
    "stack": ["fp8+gptq4", "bnb:nf4+relearn:retain", "bnb:nf4+relearn:uds", "bnb:nf4+prune:2:4", "fp8+", "rtn4+rtn4:g0", "zz4"],
}


def test_every_family_has_an_example():
    assert sorted(EXAMPLES) == FAMILIES.names()
    assert OPTIONS.names() == FAMILIES.names()  # every family registers its torch-free option parser
    assert sorted(BAD) == sorted(GOOD) == sorted([*FAMILIES.names(), "stack"])


_PARSE_ALL = """
import json, sys
from auditq.errors import InputError
from auditq.formats import parse_format
good, bad = json.loads(sys.argv[1]), json.loads(sys.argv[2])
refused = {}
for raw in good:
    parse_format(raw, "--formats " + raw)
for raw in bad:
    try:
        parse_format(raw, "--formats " + raw)
    except InputError as exc:
        refused[raw] = str(exc)
heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "transformers"))
               or (m.startswith("auditq.formats.") and m.rsplit(".", 1)[-1] in {FAMILIES}))
print(json.dumps({"refused": refused, "heavy": heavy}))
"""


def test_option_parsers_of_every_family_import_no_torch():
    good = [s for specs in GOOD.values() for s in specs] + list(EXAMPLES.values())
    bad = [s for specs in BAD.values() for s in specs]
    code = _PARSE_ALL.replace("{FAMILIES}", repr(set(FAMILIES.names()) | {"compose"}))
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(good), json.dumps(bad)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["heavy"] == []
    assert sorted(result["refused"]) == sorted(bad)  # every bad spec refused, none crashed
    for raw, message in result["refused"].items():  # one line naming the flag and the value
        assert "\n" not in message and message.startswith(f"--formats {raw}: "), message


@pytest.mark.parametrize("family", sorted(EXAMPLES))
def test_formats_are_built_from_their_parsed_options(family):
    for raw in [EXAMPLES[family], *GOOD[family]]:
        fmt, parsed = make_format(raw), parse_format(raw)
        assert fmt.options == parsed.options and fmt.spec == parsed.spec
        assert fmt.stackable == (family in ("fp8", "prune", "relearn"))
    for raw in BAD[family]:  # the same rule refuses through make_format, with the same reason
        with pytest.raises(InputError) as made:
            make_format(raw)
        with pytest.raises(InputError) as light:
            parse_format(raw)
        assert str(made.value) == str(light.value) and raw in str(made.value)


def test_stacks_are_built_part_by_part_from_their_parsed_options():
    for raw in GOOD["stack"]:
        fmt, parsed = make_format(raw), parse_format(raw)
        assert fmt.name == parsed.spec.raw and [p.options for p in fmt.parts] == [p.options for p in parsed.parts]
    for raw in BAD["stack"]:
        with pytest.raises(InputError, match="format"):
            make_format(raw)


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
    ctx = FormatContext(workdir=tmp_path, calibration_texts=UNSEEN, suite=suite, role="unlearned")
    with fmt.apply(ckpt, ctx) as lm:
        scores = lm.score([[1, 5, 6, 7]])
        assert scores[0].n_tokens == 3 and bool(torch.isfinite(torch.tensor(scores[0].logprobs)).all())
    after = ckpt.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items()), family
    assert isinstance(fmt.details(), dict)
