"""`auditq report` re-renders from report.json without measuring; `--fail-on` gates the exit code
but never swallows a tool failure (3) or bad input (2)."""

from __future__ import annotations

import json

import pytest
from junitparser import Failure, JUnitXml, Skipped
from report_helpers import _check, run_cli

from auditq.verdict.policy import gate
from auditq.result.model import FAIL, INCONCLUSIVE, PASS, UNKNOWN, WAIVED


@pytest.fixture(scope="module")
def audited(memorised, tmp_path_factory):
    """One real `check --out` on the memorising pair (forget retention FAILs at fp and rtn8)."""
    out = tmp_path_factory.mktemp("audited") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDITQ_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        code, _, _ = run_cli(mp, None, "check", str(memorised["base"]), str(memorised["unlearned"]),
                             "--suite", str(memorised["suite"]), "--config", str(memorised["config"]),
                             "-f", "fp,rtn8", "--threads", "1", "-q", "--out", str(out))
    assert code == 1
    return out


def test_rerender_matches_check_output_and_measures_nothing(audited, tmp_path, cli, monkeypatch):
    import auditq.audit.pipeline

    monkeypatch.setattr(auditq.audit.pipeline, "run_audit", lambda *a, **k: pytest.fail("report must not measure"))
    code, out, err = cli("report", audited / "report.json", "--format", "md,html,sarif,junit", "--out", tmp_path / "again")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [
        "junit.xml", "report.html", "report.md", "report.sarif"]
    for name in ("report.md", "junit.xml"):
        assert (tmp_path / "again" / name).read_text() == (audited / name).read_text()
    # default: md, html, sarif, junit beside report.json
    code, _, _ = cli("report", audited / "report.json")
    assert code == 0 and (audited / "report.html").is_file() and (audited / "report.sarif").is_file()


def test_junit_parses_with_a_junit_parser(audited):
    xml = JUnitXml.fromfile(str(audited / "junit.xml"))
    report = json.loads((audited / "report.json").read_text())
    checks = [c for f in report["formats"] for c in f["checks"]]
    cases = [case for suite in xml for case in suite]
    assert len(cases) == len(checks)
    failed = {(case.classname, case.name) for case in cases if any(isinstance(r, Failure) for r in case.result)}
    assert failed == {(f"auditq.{c['format']}", c["check"]) for c in checks
                      if c["verdict"] in ("FAIL", "INCONCLUSIVE") and c["severity"] == "error"}
    assert failed == {(f"auditq.{f}", c) for f in ("fp", "rtn8")
                      for c in ("forget_retention.verbmem", "forget_retention.knowmem")}
    assert xml.failures == len(failed)


def test_junit_marks_waived_checks_skipped(synthetic_report, tmp_path):
    from auditq.report.junit import JUnitWriter

    path = tmp_path / "junit.xml"
    path.write_text(JUnitWriter().render(synthetic_report))
    cases = {case.name: case for suite in JUnitXml.fromfile(str(path)) for case in suite}
    skipped = [r for r in cases["privleak"].result if isinstance(r, Skipped)]
    assert skipped and "waived" in skipped[0].message


@pytest.mark.parametrize("content, expected", [
    (None, "does not exist"),
    ("{not json", "not valid JSON"),
    ('{"hello": 1}', "not an auditq report.json"),
    ('{"schema_version": "2.0", "formats": []}', "schema 2.0 is not supported"),
    ('{"schema_version": "1.1", "formats": [{"format": "fp"}]}', "not a readable auditq report.json"),
])
def test_report_bad_input_exits_2(tmp_path, cli, content, expected):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    code, _, err = cli("report", path)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_report_unknown_format_exits_2(audited, cli):
    code, _, err = cli("report", audited / "report.json", "--format", "pdf")
    assert code == 2 and "unknown report format" in err


@pytest.mark.parametrize("fail_on, verdicts, expected", [
    ("inconclusive", {FAIL}, (FAIL, 1)),
    ("inconclusive", {INCONCLUSIVE}, (INCONCLUSIVE, 1)),
    ("fail", {INCONCLUSIVE}, (INCONCLUSIVE, 0)),
    ("fail", {FAIL, INCONCLUSIVE}, (FAIL, 1)),
    ("never", {FAIL, INCONCLUSIVE}, (FAIL, 0)),
    ("never", {FAIL, UNKNOWN}, (FAIL, 3)),
    ("never", {UNKNOWN}, (UNKNOWN, 3)),
    ("inconclusive", {PASS, WAIVED}, (PASS, 0)),
    ("inconclusive", {FAIL, UNKNOWN}, (FAIL, 1)),
])
def test_gate_policies(fail_on, verdicts, expected):
    checks = [_check(f"c{i}", "recovery", "rtn4", v) for i, v in enumerate(sorted(verdicts))]
    checks.append(_check("utility", "utility", "rtn4", FAIL, severity="warn"))  # warn never gates
    assert gate(checks, False, fail_on) == expected


def test_allow_inconclusive_is_fail_on_fail():
    checks = [_check("c", "recovery", "rtn4", INCONCLUSIVE)]
    assert gate(checks, True) == gate(checks, False, "fail") == (INCONCLUSIVE, 0)


def test_fail_on_never_still_exits_3_on_unknown_only_run(random_pair, tmp_path, cli):
    """Random models memorise nothing: every gating check is UNKNOWN, and `never` does not hide that."""
    code, out, _ = cli("check", random_pair["base"], random_pair["unlearned"], "--suite", random_pair["suite"],
                       "-f", "fp,rtn8", "--probes", "verbmem,knowmem", "--threads", "1", "-q",
                       "--fail-on", "never", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    gating = {c["verdict"] for f in report["formats"] for c in f["checks"] if c["severity"] == "error"}
    assert gating == {UNKNOWN, "NOT_REQUESTED"}  # privleak: mia is not in --probes
    assert code == 3 and report["exit_code"] == 3 and report["arguments"]["fail_on"] == "never"


def test_fail_on_never_passes_a_failing_run(memorised, tmp_path, cli):
    code, _, _ = cli("check", memorised["base"], memorised["unlearned"], "--suite", memorised["suite"],
                     "--config", memorised["config"], "-f", "fp", "--probes", "verbmem,knowmem,mia,utility",
                     "--threads", "1", "-q", "--fail-on", "never", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["verdict"] == FAIL and code == 0


@pytest.mark.parametrize("extra, expected", [
    (["--fail-on", "never", "--suite", "/nonexistent/suite"], "is not a directory"),
    (["--fail-on", "sometimes"], "--fail-on 'sometimes'"),
    (["--fail-on", "never", "--allow-inconclusive"], "contradicts --fail-on never"),
    (["--fail-on", "never", "--format", "sarif"], "needs --out DIR"),
    (["--fail-on", "never", "--format", "pdf", "--out", "x"], "unknown report format"),
    (["--fail-on", "never", "--waivers", "/nonexistent/waivers.toml"], "does not exist"),
])
def test_fail_on_never_still_exits_2_on_bad_input(random_pair, cli, extra, expected):
    args = ["check", random_pair["base"], random_pair["unlearned"], "-q", "--threads", "1"]
    if "--suite" not in extra:
        args += ["--suite", random_pair["suite"]]
    code, _, err = cli(*args, *extra)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
