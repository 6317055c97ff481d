"""Planning apart from execution, and one checkpoint resident at a time.

The schedule is checked by counting live transformers models (gc) every time the executor starts a
(role, format) step: never more than one, though BASE, UNLEARNED and RETRAIN are all measured in
three formats. RTN's originals come back from the safetensors files, not from clones.
"""

from __future__ import annotations

import gc
import json

import pytest
import torch

from auditq.audit.pipeline import Events, run_audit
from auditq.audit.request import audit_request
from auditq.audit.plan import plan_audit
from auditq.formats import make_formats
from auditq.probes import PROBES
from auditq.verdict.config import AuditConfig


def _live_models() -> int:
    """Whole causal LMs alive now that hold weights (their inner decoder, also a PreTrainedModel, is not
    counted twice; a shell whose tensors were moved to the meta device holds no memory and is not counted)."""
    from transformers import PreTrainedModel

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, PreTrainedModel) and type(o).__name__.endswith("ForCausalLM")
               and any(not t.is_meta for t in (*o.parameters(), *o.buffers())))


class CountingEvents(Events):
    def __init__(self) -> None:
        self.live: list[tuple[str, int]] = []
        self.said: list[str] = []

    def note(self, message: str) -> None:
        self.live.append((message, _live_models()))

    def say(self, message: str) -> None:
        self.said.append(message)


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    from formats.gguf_helpers import build_llama_checkpoint
    from suite_files import write_suite

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trio")
    paths = {role: build_llama_checkpoint(root / role, hidden=32, intermediate=64, seed=seed)
             for seed, role in enumerate(("base", "unlearned", "retrain"))}
    texts = [{"id": f"t{i}", "text": f"The quick brown fox number {i} jumps over the lazy dog in Warsaw."}
             for i in range(6)]
    qa = [{"id": f"q{i}", "question": f"Where was Marie {i} born?", "answer": "Warsaw"} for i in range(2)]
    paths["suite"] = write_suite(root / "suite", forget=texts[:3] + qa, retain=texts[3:] + qa, holdout=texts[3:] + [{"id": "hq0", "question": "Where was Anna born?", "answer": "Krakow"}],
                                 toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 4\nanswer_tokens = 3\n")
    return paths


# a 3 roles x 3 formats audit that walks gc at every step: 79 s in the quick lane (2026-12-03, loaded 2-core machine)
@pytest.mark.slow
def test_schedule_never_holds_two_checkpoints(trio):
    before = _live_models()
    events = CountingEvents()
    request = audit_request(base=trio["base"], unlearned=trio["unlearned"], retrain=trio["retrain"],
                            suite=trio["suite"], formats=("fp", "rtn8", "rtn4"),
                            config=AuditConfig(min_n=1, bootstrap_resamples=50))
    outcome = run_audit(request, events, created="t")
    steps = [(m, n - before) for m, n in events.live if not m.startswith("loading")]
    assert len(steps) == 9                                      # 3 roles × 3 formats
    assert max(n for _, n in events.live) - before == 1         # never two models at once ...
    assert any(n == 1 for _, n in steps)                        # ... and the count does see the resident one
    assert _live_models() == before                             # nothing left behind
    order = [m.split(": ")[1] for m, _ in steps]
    assert order == ["base"] * 3 + ["unlearned"] * 3 + ["retrain"] * 3
    for fmt in outcome.report.formats:
        assert fmt.details["device"] == "cpu" and fmt.details["dtype"] == "float32"
        if fmt.format.startswith("rtn"):
            assert fmt.details["restore"] == "safetensors"
    assert any("needs ~" in line and "available" in line for line in events.said)


def test_bf16_audit_records_dtype_in_every_row(trio):
    from auditq.checkpoint.placement import ComputeRequest

    request = audit_request(base=trio["base"], unlearned=trio["unlearned"], suite=trio["suite"],
                            formats=("fp", "rtn4"), compute=ComputeRequest(device="cpu", dtype="bfloat16"),
                            config=AuditConfig(min_n=1, bootstrap_resamples=50), max_batch_tokens=64)
    report = run_audit(request, created="t").report
    assert [f.details["dtype"] for f in report.formats] == ["bfloat16", "bfloat16"]
    assert report.formats[1].details["compute_dtype"] == "bfloat16"
    assert report.arguments["dtype"] == "bfloat16" and report.arguments["max_batch_tokens"] == 64


class _Probe:
    def __init__(self, name):
        self.name = name


def test_plan_lists_what_the_cache_lacks_role_by_role():
    formats = make_formats(["fp", "rtn4"])
    probes = [PROBES.load(n)() for n in ("mia", "utility")]
    cached = {("fp", "base"): {"mia"}, ("rtn4", "base"): {"mia", "utility"},
              ("fp", "unlearned"): {"mia", "utility"}, ("rtn4", "unlearned"): {"mia", "utility"}}

    def lookup(fmt, role, wanted):
        return {p.name: f"cached {p.name}" for p in wanted if p.name in cached.get((fmt.name, role), set())}

    plan = plan_audit(formats, ["unlearned", "base", "reference"], probes, lookup)
    assert [(s.role, s.format.name) for s in plan.steps] == [("base", "fp"), ("base", "rtn4"),
                                                             ("unlearned", "fp"), ("unlearned", "rtn4"),
                                                             ("reference", "fp")]
    assert [j.probe for j in plan.pending() if j.role == "base"] == ["utility"]
    assert plan.roles_to_load() == ("base", "reference")       # unlearned is wholly cached: never loaded
    assert plan.steps[0].cached == {"mia": "cached mia"}


def test_identical_checkpoints_are_deferred_to_the_cache():
    formats = make_formats(["fp"])
    probes = [PROBES.load("mia")()]
    plan = plan_audit(formats, ["base", "unlearned"], probes, lambda f, r, w: {}, identity=lambda role: "same")
    assert [s.deferred for s in plan.steps] == [False, True]


def test_cli_device_and_dtype_flags(trio, monkeypatch, capsys, tmp_path):
    from tiny_memoriser import run_cli

    code, _, err = run_cli(monkeypatch, capsys, "check", str(trio["base"]), str(trio["unlearned"]),
                           "--suite", str(trio["suite"]), "--device", "tpu")
    assert code == 2 and "--device 'tpu'" in err and "Traceback" not in err
    code, _, err = run_cli(monkeypatch, capsys, "check", str(trio["base"]), str(trio["unlearned"]),
                           "--suite", str(trio["suite"]), "--dtype", "int4")
    assert code == 2 and "--dtype 'int4'" in err
    if not torch.cuda.is_available():
        code, _, err = run_cli(monkeypatch, capsys, "check", str(trio["base"]), str(trio["unlearned"]),
                               "--suite", str(trio["suite"]), "--device", "cuda")
        assert code == 2 and "no CUDA device" in err
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "check", str(trio["base"]), str(trio["unlearned"]),
                           "--suite", str(trio["suite"]), "-f", "fp,rtn8", "--dtype", "bf16", "--device", "cpu",
                           "--max-batch-tokens", "128", "--no-cache", "-o", str(out), "--threads", "1")
    assert code in (0, 1, 3) and "needs ~" in err
    rows = json.loads((out / "report.json").read_text())["formats"]
    assert {(r["details"]["device"], r["details"]["dtype"]) for r in rows} == {("cpu", "bfloat16")}


@pytest.mark.slow
def test_engines_free_the_resident_checkpoint_before_building_their_own(trio, monkeypatch):
    """bnb, GPTQ and GGUF build a model of their own: the resident torch copy is gone by then.

    Counted when the engine's model is handed to the probes (TorchCausalLM for bnb / GPTQ, the
    llama.cpp model for GGUF): one live torch model (the engine's) or none (llama.cpp), never the
    resident one as well. The engine steps run after the in-place formats of each role, and the
    in-place formats still see the checkpoint's weights (fp and rtn rows measured as usual).
    """
    import importlib.util

    missing = [m for m in ("bitsandbytes", "gptqmodel", "llama_cpp", "gguf") if importlib.util.find_spec(m) is None]
    if missing:  # find_spec, not importorskip: importing gptqmodel here would run its import side effects
        pytest.skip(f"needs {', '.join(missing)}")
    from auditq.backends import llamacpp_lm, torch_lm

    seen: list[tuple[str, int]] = []
    torch_init, llama_init = torch_lm.TorchCausalLM.__init__, llamacpp_lm.LlamaCppLM.__init__

    def counting_torch(self, model, *args, **kwargs):
        seen.append((kwargs.get("description", ""), _live_models()))
        torch_init(self, model, *args, **kwargs)

    def counting_llama(self, *args, **kwargs):
        seen.append(("llama.cpp " + str(kwargs.get("description", "")), _live_models()))
        llama_init(self, *args, **kwargs)

    monkeypatch.setattr(torch_lm.TorchCausalLM, "__init__", counting_torch)
    monkeypatch.setattr(llamacpp_lm.LlamaCppLM, "__init__", counting_llama)
    before = _live_models()
    events = CountingEvents()
    request = audit_request(base=trio["base"], unlearned=trio["unlearned"], suite=trio["suite"],
                            formats=("bnb:int8", "fp", "gptq4", "gguf:q8_0", "rtn4"),
                            config=AuditConfig(min_n=1, bootstrap_resamples=50))
    outcome = run_audit(request, events, created="t")
    assert not [r for r in outcome.runs if r.error], [r.error for r in outcome.runs if r.error]
    order = [m.split(": ")[0] for m, _ in events.live if not m.startswith("loading") and m.endswith(": base")]
    assert order == ["fp", "rtn4", "bnb:int8", "gptq4", "gguf:q8_0"]     # in-place formats first
    engines = [(d, n - before) for d, n in seen if "bitsandbytes" in d or "Linear" in d or "llama.cpp" in d]
    assert len(engines) == 6                                              # 2 roles × 3 engines
    for description, live in engines:
        assert live == (0 if description.startswith("llama.cpp") else 1), (description, live)
    assert max(n for _, n in events.live) - before <= 1
    assert _live_models() == before
    assert [f.format for f in outcome.report.formats] == [f.name for f in request.formats]  # the asked order
