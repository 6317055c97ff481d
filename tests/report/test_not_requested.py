"""A check whose probe was not in --probes is NOT_REQUESTED in report.json and every writer, is left out of
the overall verdict, and round-trips through `auditq report`; an audit that ran no gating check is UNKNOWN."""

from __future__ import annotations

import json

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from report_helpers import _check

from auditq.result.model import NOT_REQUESTED, PASS, UNKNOWN
from auditq.verdict.policy import gate

MEMORISATION_CHECKS = {"forget_retention.verbmem", "forget_retention.knowmem", "recovery.verbmem", "recovery.knowmem"}


@pytest.fixture(scope="module")
def mia_only(memorised, tmp_path_factory):
    """`check --probes mia -f fp,rtn8` on the memorising pair: only PrivLeak runs (its threshold is out of
    reach in the fixture's config, so it PASSes); every other check is NOT_REQUESTED."""
    from report_helpers import run_cli

    out = tmp_path_factory.mktemp("mia-only") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDITQ_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        code, _, _ = run_cli(mp, None, "check", str(memorised["base"]), str(memorised["unlearned"]),
                             "--suite", str(memorised["suite"]), "--config", str(memorised["config"]),
                             "-f", "fp,rtn8", "--probes", "mia", "--threads", "1", "-q", "--out", str(out),
                             "--format", "sarif,html")
    return code, out


def test_unrequested_checks_are_not_requested_and_do_not_gate(mia_only):
    code, out = mia_only
    report = json.loads((out / "report.json").read_text())
    verdicts = {(f["format"], c["check"]): c for f in report["formats"] for c in f["checks"]}
    for (fmt, name), check in verdicts.items():
        if name == "privleak":
            assert check["verdict"] == PASS, check
        else:  # never UNKNOWN: nothing failed to measure, it was not asked for
            assert check["verdict"] == NOT_REQUESTED and check["value"] is None and check["n"] == 0, check
            assert "not requested" in check["message"]
    assert {name for _, name in verdicts} == MEMORISATION_CHECKS | {"privleak", "utility"}
    assert report["verdict"] == PASS and report["exit_code"] == 0 and code == 0


def test_every_writer_labels_not_requested(mia_only):
    _, out = mia_only
    assert "➖ not requested" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert 'class="notrequested"' in html and "not requested" in html
    cases = {(case.classname, case.name): case for suite in JUnitXml.fromfile(str(out / "junit.xml")) for case in suite}
    for (cls, name), case in cases.items():
        kinds = {type(r) for r in case.result}
        if name == "privleak":
            assert not kinds, (cls, name)
        else:
            assert kinds == {Skipped} and "not requested" in case.result[0].message, (cls, name)
            assert Error not in kinds and Failure not in kinds
    sarif = json.loads((out / "report.sarif").read_text())["runs"][0]
    assert sarif["results"] == []  # not requested is neither a finding nor a tool failure
    assert sarif["invocations"][0]["executionSuccessful"] is True
    assert "toolExecutionNotifications" not in sarif["invocations"][0]


def test_not_requested_round_trips_through_auditq_report(mia_only, tmp_path, cli):
    _, out = mia_only
    code, _, err = cli("report", out / "report.json", "--format", "md,junit,html,sarif", "--out", tmp_path / "again")
    assert code == 0, err
    for name in ("report.md", "junit.xml", "report.sarif"):
        assert (tmp_path / "again" / name).read_text() == (out / name).read_text()


def test_terminal_says_not_requested(memorised, cli, tmp_path):
    code, stdout, _ = cli("check", memorised["base"], memorised["unlearned"], "--suite", memorised["suite"],
                          "--config", memorised["config"], "-f", "fp", "--probes", "mia", "--threads", "1",
                          "--out", tmp_path / "out")
    assert code == 0
    assert "not requested" in stdout and "forget_retention.verbmem" in stdout and "overall: PASS" in stdout


def test_no_gating_check_ran_is_unknown_exit_3(memorised, cli, tmp_path):
    """--probes utility (retain likelihood) measures no gating check: UNKNOWN, exit 3, never PASS. The utility
    check was asked for (its probe family) but reads KnowMem, so it is UNKNOWN and says to add knowmem."""
    code, stdout, _ = cli("check", memorised["base"], memorised["unlearned"], "--suite", memorised["suite"],
                          "--config", memorised["config"], "-f", "fp", "--probes", "utility", "--threads", "1",
                          "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    checks = {c["check"]: c for f in report["formats"] for c in f["checks"]}
    assert checks["utility"]["verdict"] == UNKNOWN and "add knowmem to --probes" in checks["utility"]["message"]
    assert {c["verdict"] for n, c in checks.items() if n != "utility"} == {NOT_REQUESTED}
    assert code == 3 and report["verdict"] == UNKNOWN and "no gating check ran" in stdout


@pytest.mark.parametrize("verdicts, expected", [
    ([], (UNKNOWN, 3)),
    ([NOT_REQUESTED], (UNKNOWN, 3)),
    ([NOT_REQUESTED, NOT_REQUESTED], (UNKNOWN, 3)),
    ([NOT_REQUESTED, PASS], (PASS, 0)),
    ([NOT_REQUESTED, "FAIL"], ("FAIL", 1)),
    ([NOT_REQUESTED, "INCONCLUSIVE"], ("INCONCLUSIVE", 1)),
    ([NOT_REQUESTED, UNKNOWN], (UNKNOWN, 3)),
])
@pytest.mark.parametrize("fail_on", ["inconclusive", "never"])
def test_gate_leaves_not_requested_out(verdicts, expected, fail_on):
    checks = [_check(f"c{i}", "recovery", "rtn4", v) for i, v in enumerate(verdicts)]
    want = expected if fail_on == "inconclusive" or expected[1] == 3 else (expected[0], 0)
    assert gate(checks, False, fail_on) == want


def test_gate_with_only_warn_checks_left_after_not_requested_is_unknown():
    """A warn-only check that ran cannot carry a gate whose gating checks were all left out."""
    checks = [_check("utility", "utility", "fp", PASS, severity="warn"), _check("privleak", "privleak", "fp", NOT_REQUESTED)]
    assert gate(checks, False) == (UNKNOWN, 3)
    # ... while a configuration that made every check warn-only, with everything measured, keeps its PASS
    assert gate([_check("utility", "utility", "fp", PASS, severity="warn")], False) == (PASS, 0)


@pytest.mark.parametrize("today, status, says", [
    ("2026-01-01", "not_needed", "not requested"),
    ("2027-01-01", "expired", "were not requested in this run"),
])
def test_a_waiver_over_a_not_requested_check_never_says_it_passes(today, status, says):
    from datetime import date

    from auditq.result.model import FormatResult
    from auditq.verdict.waivers import Waiver, apply_waivers

    fmt = FormatResult(format="rtn4", details={}, roles={},
                       checks=(_check("privleak", "privleak", "rtn4", NOT_REQUESTED, value=None, low=None, high=None),))
    waiver = Waiver(check="privleak", format="rtn4", reason="TICKET-1", expires=date(2026, 6, 30), source="test")
    results, report = apply_waivers([fmt], [waiver], date.fromisoformat(today))
    assert results[0].checks[0].verdict == NOT_REQUESTED  # never turned into WAIVED
    assert report[0]["status"] == status and says in report[0]["detail"] and "pass" not in report[0]["detail"]
