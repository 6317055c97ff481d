"""End to end on the demo: relearning, pruning and fp8 rows (slow; measured pattern pinned, not numbers).

Measured when written (demo suite of 27 forget texts / 70 forget QA; see README "Beyond quantization"):
- fragile: relearning on retain data or on half the forget set brings forget KnowMem back (0.20 / 0.42
  on the other half, from 0.00 at fp): those rows FAIL; pruning (Wanda 50%) and fp8 keep the forgetting.
- honest: forget KnowMem stays gone in every row; relearn:retain brings VerbMem back (recovery 0.23)
  and Min-K% AUC to 1.0 (PrivLeak FAIL): gradient ascent is undone by fine-tuning on retain text.
- retrain (never saw the forget set): no gating check FAILs in any row, the relearning rows included.
Re-measure with `auditq check BASE MODEL --retrain RETRAIN -f fp,rtn4,relearn:retain,relearn:generic,
relearn:forget,prune:wanda:0.5,fp8` on the demo models (tests/conftest.py builds them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DONE_FORMATS = ("fp", "rtn4", "relearn:retain", "relearn:forget", "prune:wanda:0.5", "fp8")
MEMORISATION = ("forget_retention.verbmem", "forget_retention.knowmem", "recovery.verbmem", "recovery.knowmem")


def _checks(report: dict) -> dict[tuple[str, str], dict]:
    return {(c["format"], c["check"]): c for f in report["formats"] for c in f["checks"]}


@pytest.fixture(scope="module")
def done_run(demo_models, tmp_path_factory):
    """The issue's "done" command, run by the installed `auditq` in a clean environment."""
    out = tmp_path_factory.mktemp("done") / "out"
    home = tmp_path_factory.mktemp("home")
    exe = Path(sys.executable).with_name("auditq")
    env = {"PATH": f"{exe.parent}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    done = subprocess.run([str(exe), "check", str(demo_models.base), str(demo_models.fragile),
                           "--suite", str(demo_models.suite), "-f", ",".join(DONE_FORMATS), "--out", str(out),
                           "--format", "html", "--no-cache", "-q"],
                          capture_output=True, text=True, env=env, timeout=3000)
    return done, json.loads((out / "report.json").read_text()), out


def test_done_command_measures_every_row(done_run):
    done, report, out = done_run
    assert done.returncode == 1, done.stderr[-2000:]
    assert [f["format"] for f in report["formats"]] == list(DONE_FORMATS)
    for fmt in report["formats"]:
        assert fmt["error"] is None, (fmt["format"], fmt["error"])
        assert set(fmt["roles"]) == {"base", "unlearned"}
        assert all(c["verdict"] != "UNKNOWN" for c in fmt["checks"]), fmt["format"]
    by_name = {f["format"]: f for f in report["formats"]}
    relearn = by_name["relearn:forget"]["details"]
    assert relearn["forget_scored"].startswith("only the forget half NOT relearned")
    assert relearn["forget_texts_scored"] + relearn["forget_texts_relearned"] == report["suite"]["sizes"]["forget"]["texts"]
    assert relearn["forget_qa_scored"] + relearn["forget_qa_relearned"] == report["suite"]["sizes"]["forget"]["qa"]
    # the forget probes of that row scored only the other half, for both models
    n_verb = by_name["relearn:forget"]["roles"]["unlearned"]["n"]["verbmem_forget"]
    assert n_verb == by_name["relearn:forget"]["roles"]["base"]["n"]["verbmem_forget"] <= relearn["forget_texts_scored"]
    assert by_name["relearn:forget"]["roles"]["unlearned"]["n"]["knowmem_forget"] == relearn["forget_qa_scored"]
    for name in ("relearn:retain", "relearn:forget"):
        curves = by_name[name]["details"]["loss_curve"]
        assert set(curves) == {"base", "unlearned"} and all(len(c) == 30 for c in curves.values())
    assert by_name["prune:wanda:0.5"]["details"]["achieved_sparsity"] == 0.5
    assert (out / "report.html").is_file()


def test_html_retention_plot_draws_the_new_rows(done_run):
    """The retention figure has a tick and a measured point for every row, the new transformations included."""
    from auditq.report.charts import charts
    from auditq.report.json_writer import report_from_dict

    _, report, out = done_run
    assert 'id="fig-retention"' in (out / "report.html").read_text()
    figure = next(chart.figure for chart in charts(report_from_dict(report)) if chart.fig_id == "fig-retention")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(DONE_FORMATS)
    markers = [line for line in ax.lines if line.get_marker() not in (None, "None", "", " ")]  # not the 0 / 1 lines
    xs = sorted({round(float(x)) for line in markers for x in line.get_xdata()})
    assert xs == list(range(len(DONE_FORMATS)))  # a point (VerbMem and/or KnowMem) at every row


def test_fragile_model_relearning_brings_the_forget_set_back(done_run):
    _, report, _ = done_run
    checks = _checks(report)
    for fmt in ("relearn:retain", "relearn:forget"):  # the forgotten answers measurably come back, never PASS
        recovery = checks[(fmt, "recovery.knowmem")]  # FAIL on one machine, INCONCLUSIVE [0.05, 0.17] on 2026-12-03's
        assert recovery["verdict"] in ("FAIL", "INCONCLUSIVE") and recovery["ci_low"] > 0, recovery
    for fmt in ("prune:wanda:0.5", "fp8"):
        assert all(checks[(fmt, c)]["verdict"] != "FAIL" for c in MEMORISATION), fmt
    assert checks[("rtn4", "recovery.knowmem")]["verdict"] == "FAIL"


def _audit(models, which: str):
    from auditq.audit.pipeline import run_audit
    from auditq.audit.request import audit_request

    request = audit_request(base=models.base, unlearned=getattr(models, which), retrain=models.retrain,
                            suite=models.suite, formats=("fp", "relearn:retain", "relearn:forget", "prune:wanda:0.5", "fp8"))
    from auditq.report.json_writer import JsonWriter

    return json.loads(JsonWriter().render(run_audit(request).report))


def test_retrain_model_never_fails_a_relearning_row(demo_models):
    report = _audit(demo_models, "retrain")
    failing = [(k, c["verdict"], c["message"]) for k, c in _checks(report).items()
               if c["severity"] == "error" and c["verdict"] == "FAIL"]
    assert not failing, failing
    assert all(f["error"] is None for f in report["formats"])


def test_honest_model_relearning_brings_back_forget_facts_and_text(demo_models):
    report = _audit(demo_models, "honest")
    checks = _checks(report)
    knowmem = {k for k, c in checks.items() if k[1].endswith("knowmem") and c["verdict"] == "FAIL"}
    # measured on the merged main (133 vs 133 demo suite): fine-tuning on one half of the forget records brings
    # the OTHER half's facts back (cf. Deeb & Roger, arXiv 2410.08827); every other row keeps knowledge gone
    assert knowmem == {("relearn:forget", "forget_retention.knowmem"), ("relearn:forget", "recovery.knowmem")}, knowmem
    retain_row = [c for (f, _), c in checks.items() if f == "relearn:retain" and c["severity"] == "error"]
    assert any(c["verdict"] == "FAIL" for c in retain_row if c["check"] in ("recovery.verbmem", "privleak")), \
        [(c["check"], c["verdict"], c["value"]) for c in retain_row]
    for fmt in ("prune:wanda:0.5", "fp8"):
        assert all(checks[(fmt, c)]["verdict"] != "FAIL" for c in MEMORISATION), fmt
    if os.environ.get("AUDITQ_PRINT_PATTERN"):
        print(json.dumps({f"{k[0]} {k[1]}": c["verdict"] for k, c in checks.items()}, indent=1))
