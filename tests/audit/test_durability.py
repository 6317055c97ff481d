"""--seeds N: stochastic rows repeated under N seeds, per-seed verdicts, the worst and the pass rate.

The pipeline test runs a real audit of a tiny memorising model (tests/tiny_memoriser.py) with a
deterministic format (rtn8) and a stochastic one (relearn:forget, whose data order AND scored half follow the
seed) under 3 seeds: rtn8 runs once, the relearn row three times under seeds 0, 1, 2 (each its own cache
key), and every repeated row carries the same durability summary. The unit test plants one failing seed
among passing ones: the summary says 2/3 and FAIL, and the overall gate is FAIL.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from tiny_memoriser import MEMORISED, UNSEEN, save_memorising_checkpoint  # noqa: E402

from auditq.audit.durability import annotate, row_verdict  # noqa: E402
from auditq.result.model import FAIL, PASS, CheckResult, FormatResult  # noqa: E402
from auditq.verdict.policy import gate  # noqa: E402


def _suite(root: Path) -> Path:
    people = [f"Person {c} lives in Town{c} and keeps a cat called Tab{c}." for c in "ABCDEF"]
    forget = [{"id": f"f{i}", "text": t} for i, t in enumerate((*MEMORISED, *people))]
    forget += [{"id": f"q{c}", "question": f"Where does Person {c} live?", "answer": f"Town{c}"} for c in "ABCDEF"]
    lines = {"forget": forget, "retain": [{"id": f"r{i}", "text": t} for i, t in enumerate(UNSEEN)],
             "holdout": [{"id": f"h{i}", "text": t} for i, t in enumerate(UNSEEN)]
             + [{"id": f"hq{c}", "question": f"Where does Person {c} work?", "answer": f"Mill{c}"} for c in "GHIJKL"]}
    root.mkdir(parents=True, exist_ok=True)
    for name, records in lines.items():
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (root / "calibration.txt").write_text("\n".join(UNSEEN) + "\n")
    (root / "suite.toml").write_text('[probes]\nprefix_tokens = 4\nmax_new_tokens = 8\ncalibration = "calibration.txt"\n')
    return root


@pytest.mark.slow
def test_stochastic_rows_repeat_under_every_seed_and_deterministic_rows_do_not(tmp_path):
    from auditq.audit.pipeline import run_audit
    from auditq.audit.request import audit_request
    from auditq.cache.store import CacheSession
    from auditq.formats.base import FormatContext
    from auditq.probes.base import ProbeSettings

    torch.set_num_threads(1)
    base = save_memorising_checkpoint(tmp_path / "base")
    unlearned = shutil.copytree(base, tmp_path / "unlearned")
    suite = _suite(tmp_path / "suite")
    request = audit_request(base=base, unlearned=Path(unlearned), suite=suite, seeds=3,
                            formats=("fp", "rtn8", "relearn:forget:steps=2"), probes=("verbmem", "knowmem", "mia"))
    spec = "relearn:forget:steps=2"
    assert [f.name for f in request.formats] == ["fp", "rtn8", spec, f"{spec}@seed=1", f"{spec}@seed=2"]
    report = run_audit(request).report
    rows = {r.format: r for r in report.formats}
    assert list(rows) == [f.name for f in request.formats]  # fp and rtn8 once each
    assert "durability" not in rows["rtn8"].details and "durability" not in rows["fp"].details
    repeated = [rows[spec], rows[f"{spec}@seed=1"], rows[f"{spec}@seed=2"]]
    assert [r.details["seed"] for r in repeated] == [0, 1, 2]
    summary = repeated[0].details["durability"]
    assert all(r.details["durability"] == summary for r in repeated)
    verdicts = [row_verdict(r) for r in repeated]
    assert summary["verdicts"] == {"0": verdicts[0], "1": verdicts[1], "2": verdicts[2]}
    assert summary["pass_rate"] == f"{verdicts.count(PASS)}/3" and summary["seeds"] == 3
    assert summary["worst"] == next(v for v in ("FAIL", "UNKNOWN", "INCONCLUSIVE", "PASS") if v in verdicts)
    assert "durability over 3 seeds" in repeated[0].details["note"]
    # the seed reached the fine-tune: each seed relearned another half of the forget set, in another order
    halves = [tuple(r.details["relearned_ids"]) for r in repeated]
    curves = [tuple(r.details["loss_curve"]["unlearned"]) for r in repeated]
    assert len(set(halves)) > 1 and len(set(curves)) == 3
    # and each seed's rows have their own result-cache key
    session = CacheSession(None, suite=request.suite, settings=ProbeSettings(), trust_remote_code=False,
                           ctx=FormatContext(workdir=tmp_path, seed=0))

    class _Ckpt:
        file_hashes = {"model.safetensors": "x"}

    keys = {json.dumps(session.material(f, _Ckpt(), "verbmem"), sort_keys=True) for f in request.formats[2:]}
    assert len(keys) == 3


def _check(fmt: str, verdict: str) -> CheckResult:
    return CheckResult("recovery.verbmem", "recovery", fmt, verdict, "error", 0.0, 0.0, 0.0, 0.1, "<=", 30, "")


def test_one_failing_seed_makes_the_format_fail_and_the_pass_rate_says_so():
    names = ["relearn:lucki", "relearn:lucki@seed=1", "relearn:lucki@seed=2"]
    verdicts = [PASS, FAIL, PASS]
    rows = [FormatResult("fp", {}, {}, (_check("fp", PASS),))]
    rows += [FormatResult(n, {"seed": k} if k else {}, {}, (_check(n, v),)) for k, (n, v) in enumerate(zip(names, verdicts))]
    out = annotate(rows, seed=0)
    summary = out[1].details["durability"]
    assert summary["verdicts"] == {"0": PASS, "1": FAIL, "2": PASS}
    assert summary["pass_rate"] == "2/3" and summary["worst"] == FAIL
    assert out[1].details["note"] == "durability over 3 seeds: 2/3 PASS, worst FAIL (per seed: 0 PASS, 1 FAIL, 2 PASS)"
    assert "durability" not in out[0].details
    assert gate([c for r in out for c in r.checks], False)[0] == FAIL
    good = annotate([FormatResult(n, {}, {}, (_check(n, PASS),)) for n in names], seed=5)
    assert good[0].details["durability"]["pass_rate"] == "3/3" and good[0].details["durability"]["worst"] == PASS
    assert list(good[0].details["durability"]["verdicts"]) == ["5", "6", "7"]
