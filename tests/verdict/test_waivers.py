"""Waivers: keyed on check × format, time-limited on an injectable clock, reported whatever they match."""

from __future__ import annotations

import json
from datetime import date

import pytest
from report_helpers import _check

from auditq.verdict.policy import gate
from auditq.errors import InputError
from auditq.result.model import FAIL, INCONCLUSIVE, PASS, UNKNOWN, WAIVED, FormatResult
from auditq.verdict.config import load_config
from auditq.verdict.waivers import Waiver, apply_waivers, load_waivers, parse_waiver, today_utc

EXPIRES = date(2026, 6, 30)


def _results():
    fp = FormatResult("fp", {}, {}, (
        _check("forget_retention.verbmem", "forget_retention", "fp", PASS, value=0.1, low=0.05, high=0.2),
        _check("privleak", "privleak", "fp", PASS, value=1.0, low=-3, high=4, threshold=20, comparator="abs<="),
    ))
    rtn4 = FormatResult("rtn4", {}, {}, (
        _check("forget_retention.verbmem", "forget_retention", "rtn4", FAIL),
        _check("recovery.verbmem", "recovery", "rtn4", FAIL),
        _check("recovery.knowmem", "recovery", "rtn4", INCONCLUSIVE, low=0.05, high=0.3, threshold=0.1),
        _check("privleak", "privleak", "rtn4", UNKNOWN, value=None, low=None, high=None, message="crashed"),
    ))
    return [fp, rtn4]


def _w(check="recovery", fmt="rtn4", expires=EXPIRES, reason="re-unlearning planned, TICKET-1") -> Waiver:
    return Waiver(check=check, format=fmt, reason=reason, expires=expires, source="test")


def _by_key(results):
    return {(c.format, c.check): c for r in results for c in r.checks}


def test_waived_fail_is_waived_and_passes_the_gate():
    results, statuses = apply_waivers(_results(), [_w(), _w("forget_retention")], today=date(2026, 6, 1))
    checks = _by_key(results)
    assert checks[("rtn4", "recovery.verbmem")].verdict == WAIVED
    assert checks[("rtn4", "recovery.verbmem")].waiver["original_verdict"] == FAIL
    assert checks[("rtn4", "recovery.knowmem")].verdict == WAIVED  # INCONCLUSIVE can be accepted too
    assert checks[("rtn4", "forget_retention.verbmem")].verdict == WAIVED
    assert "waived until 2026-06-30" in checks[("rtn4", "recovery.verbmem")].message
    assert checks[("fp", "forget_retention.verbmem")].verdict == PASS  # other formats untouched
    assert [s["status"] for s in statuses] == ["applied", "applied"]
    # only the UNKNOWN privleak is left: a gate never swallows a tool failure, waivers do not either
    all_checks = [c for r in results for c in r.checks]
    assert gate(all_checks, False) == (UNKNOWN, 3)
    without_unknown = [c for c in all_checks if c.verdict != UNKNOWN]
    assert gate(without_unknown, False) == (PASS, 0)


def test_expiry_on_a_fixed_clock():
    # the waiver holds through its expiry date ...
    results, statuses = apply_waivers(_results(), [_w()], today=EXPIRES)
    assert _by_key(results)[("rtn4", "recovery.verbmem")].verdict == WAIVED
    assert statuses[0]["status"] == "applied"
    # ... and stops applying the day after, saying so on the check and in the waiver list
    results, statuses = apply_waivers(_results(), [_w()], today=date(2026, 7, 1))
    check = _by_key(results)[("rtn4", "recovery.verbmem")]
    assert check.verdict == FAIL
    assert check.waiver["status"] == "expired"
    assert "waiver expired on 2026-06-30 and no longer applies" in check.message
    assert statuses[0]["status"] == "expired"
    assert "rtn4/recovery.verbmem" in statuses[0]["detail"]
    assert gate([c for r in results for c in r.checks], False)[1] == 1


def test_unmatched_and_not_needed_waivers_are_reported():
    waivers = [_w(fmt="gguf:q4_0"), _w("forget_retention", fmt="fp"), _w("privleak", fmt="rtn4")]
    results, statuses = apply_waivers(_results(), waivers, today=date(2026, 1, 1))
    assert [s["status"] for s in statuses] == ["unmatched", "not_needed", "not_needed"]
    assert "no check 'recovery' in format 'gguf:q4_0'" in statuses[0]["detail"]
    assert "UNKNOWN is never waived" in statuses[2]["detail"]
    assert _by_key(results)[("rtn4", "privleak")].verdict == UNKNOWN


def test_specific_check_id_wins_over_family():
    family = _w("recovery", reason="family-wide")
    specific = _w("recovery.verbmem", reason="just verbmem")
    results, statuses = apply_waivers(_results(), [family, specific], today=date(2026, 1, 1))
    checks = _by_key(results)
    assert checks[("rtn4", "recovery.verbmem")].waiver["reason"] == "just verbmem"
    assert checks[("rtn4", "recovery.knowmem")].waiver["reason"] == "family-wide"
    assert [s["status"] for s in statuses] == ["applied", "applied"]


def test_no_waivers_changes_nothing():
    results, statuses = apply_waivers(_results(), [], today=date(2026, 1, 1))
    assert results == _results() and statuses == ()


@pytest.mark.parametrize("entry, expected", [
    ({"check": "recovery", "format": "rtn4", "reason": "x"}, "missing expires"),
    ({"check": "recovery", "format": "rtn4", "reason": " ", "expires": "2026-01-01"}, "reason must say why"),
    ({"check": "bogus", "format": "rtn4", "reason": "x", "expires": "2026-01-01"}, "not a check family or id"),
    ({"check": "recovery", "format": "rtn4", "reason": "x", "expires": "soon"}, "must be a date"),
    ({"check": "recovery", "format": "rtn4", "reason": "x", "expires": "2026-01-01", "sample": 3},
     "never on samples"),
    ({"check": "recovery", "format": "rtn4", "reason": "x", "expires": "2026-01-01", "indices": [1, 2]},
     "never on samples"),
])
def test_bad_waivers_are_input_errors(entry, expected):
    with pytest.raises(InputError) as info:
        parse_waiver(entry, "f.toml: waivers[0]")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_waivers_load_from_all_three_places(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.auditq]\nmin_n = 5\n[[tool.auditq.waivers]]\ncheck = "privleak"\nformat = "RTN4"\n'
        'reason = "from pyproject"\nexpires = 2026-06-30\n')
    (tmp_path / "auditq.toml").write_text(
        '[[waivers]]\ncheck = "utility"\nformat = "fp"\nreason = "from auditq.toml"\nexpires = "2026-06-30"\n')
    (tmp_path / "auditq-waivers.toml").write_text(
        '[[waivers]]\ncheck = "recovery.verbmem"\nformat = "rtn4"\nreason = "from the waivers file"\n'
        'expires = 2026-06-30\nowner = "ml-compliance"\nticket = "T-1"\n')
    waivers = load_waivers(tmp_path)
    assert [w.reason for w in waivers] == ["from pyproject", "from auditq.toml", "from the waivers file"]
    assert waivers[0].format == "rtn4" and waivers[0].expires == EXPIRES
    assert waivers[2].owner == "ml-compliance" and waivers[2].describe()["ticket"] == "T-1"
    assert load_config(tmp_path).min_n == 5  # the config loader skips the waivers tables


def test_waivers_file_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_waivers(tmp_path, waivers_file=tmp_path / "nope.toml")
    (tmp_path / "auditq-waivers.toml").write_text('[[waiver]]\ncheck = "recovery"\n')
    with pytest.raises(InputError, match="unknown top-level"):
        load_waivers(tmp_path)


def test_clock_env_override(monkeypatch):
    monkeypatch.setenv("AUDITQ_TODAY", "2027-02-03")
    assert today_utc() == date(2027, 2, 3)
    monkeypatch.setenv("AUDITQ_TODAY", "tomorrow")
    with pytest.raises(InputError):
        today_utc()


def test_cli_waiver_turns_a_fail_into_a_pass_until_it_expires(memorised, tmp_path, monkeypatch, cli):
    """base == unlearned: forget retention FAILs at every format; waiving that family passes the gate."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "auditq-waivers.toml").write_text(
        '[[waivers]]\ncheck = "forget_retention"\nformat = "fp"\nreason = "accepted for the beta, TICKET-9"\n'
        'expires = 2026-06-30\n'
        '[[waivers]]\ncheck = "forget_retention"\nformat = "rtn8"\nreason = "accepted for the beta, TICKET-9"\n'
        'expires = 2026-06-30\n'
        '[[waivers]]\ncheck = "privleak"\nformat = "gguf:q4_0"\nreason = "stale"\nexpires = 2026-06-30\n')
    args = [memorised["base"], memorised["unlearned"], "--suite", memorised["suite"], "--config", memorised["config"],
            "-f", "fp,rtn8", "--probes", "verbmem,knowmem", "--threads", "1", "-q"]
    monkeypatch.setenv("AUDITQ_TODAY", "2026-06-30")
    code, out, _ = cli("check", *args, "--out", tmp_path / "valid")
    report = json.loads((tmp_path / "valid" / "report.json").read_text())
    verdicts = {(c["format"], c["check"]): c["verdict"] for f in report["formats"] for c in f["checks"]}
    assert verdicts[("fp", "forget_retention.verbmem")] == "WAIVED"
    assert verdicts[("rtn8", "forget_retention.knowmem")] == "WAIVED"
    assert [w["status"] for w in report["waivers"]] == ["applied", "applied", "unmatched"]
    assert "waiver unmatched" in out
    # probes verbmem,knowmem only: privleak is NOT_REQUESTED (mia not asked for), left out of the gate
    assert verdicts[("fp", "privleak")] == "NOT_REQUESTED" and code == 0
    code, _, _ = cli("check", *args, "--severity", "privleak=warn", "--severity", "utility=warn",
                     "--out", tmp_path / "pass")
    assert code == 0
    monkeypatch.setenv("AUDITQ_TODAY", "2026-07-01")
    code, out, _ = cli("check", *args, "--severity", "privleak=warn", "--out", tmp_path / "expired")
    assert code == 1
    report = json.loads((tmp_path / "expired" / "report.json").read_text())
    assert {w["status"] for w in report["waivers"][:2]} == {"expired"}
    assert "waiver expired" in (tmp_path / "expired" / "report.md").read_text()
