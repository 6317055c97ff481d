"""report.sarif validates against the OASIS SARIF 2.1.0 schema (vendored in tests/data, see its README)
and maps verdicts to results and levels as documented."""

from __future__ import annotations

import copy
import json

import jsonschema
from report_helpers import DATA

from auditq.report.sarif import SarifWriter, sarif_log

SCHEMA = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))


def _errors(document) -> list[str]:
    cls = jsonschema.validators.validator_for(SCHEMA)
    validator = cls(SCHEMA, format_checker=cls.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_vendored_schema_is_the_oasis_sarif_2_1_0_schema():
    assert SCHEMA["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert SCHEMA["id"] == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    jsonschema.validators.validator_for(SCHEMA).check_schema(SCHEMA)


def test_synthetic_report_validates_and_maps_levels(synthetic_report):
    document = json.loads(SarifWriter().render(synthetic_report))
    assert _errors(document) == []
    assert document["version"] == "2.1.0"
    run = document["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["forget_retention", "recovery", "privleak", "utility"]
    assert run["tool"]["driver"]["rules"][3]["defaultConfiguration"]["level"] == "warning"  # utility is warn
    by_check = {(r["properties"]["format"], r["properties"]["check"]): r for r in run["results"]}
    # one result per failing or inconclusive format × check (WAIVED kept, suppressed); PASS and UNKNOWN are not results
    assert set(by_check) == {("rtn4", "forget_retention.verbmem"), ("rtn4", "forget_retention.knowmem"),
                             ("rtn4", "privleak"), ("rtn4", "utility"), ("rtn4", "utility.inconclusive")}
    assert by_check[("rtn4", "forget_retention.verbmem")]["level"] == "error"       # gating FAIL
    assert by_check[("rtn4", "forget_retention.knowmem")]["level"] == "warning"     # gating INCONCLUSIVE
    assert by_check[("rtn4", "utility")]["level"] == "warning"                      # warn-severity FAIL
    assert by_check[("rtn4", "utility.inconclusive")]["level"] == "note"            # warn-severity INCONCLUSIVE
    waived = by_check[("rtn4", "privleak")]
    assert waived["level"] == "error" and waived["suppressions"][0]["status"] == "accepted"
    assert "TICKET-7" in waived["suppressions"][0]["justification"]
    failing = by_check[("rtn4", "forget_retention.verbmem")]
    text = failing["message"]["text"]
    assert "0.900 [0.800, 1.000]" in text and "≤ 0.250" in text and "n=40" in text
    assert failing["ruleId"] == "forget_retention" and failing["ruleIndex"] == 0
    # checkpoint files as artifacts with their hashes; the result points at the unlearned weights
    location = failing["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location["uri"] == "file:///abs/models/un%20learned/model.safetensors"
    assert run["artifacts"][location["index"]]["hashes"]["sha-256"] == "c" * 64
    related = failing["relatedLocations"][0]["physicalLocation"]["artifactLocation"]
    assert related == {"uri": "models/base/model.safetensors", "uriBaseId": "SRCROOT",
                       "index": run["artifacts"].index(next(a for a in run["artifacts"]
                                                             if a["location"]["uri"] == "models/base/model.safetensors"))}
    # UNKNOWN is a tool failure, reported on the invocation
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert "engine missing" in invocation["toolExecutionNotifications"][0]["message"]["text"]
    assert any("unmatched" in n["message"]["text"] for n in invocation["toolConfigurationNotifications"])


def test_validator_rejects_a_broken_log(synthetic_report):
    """The validation above is real: the same document with a bad level or no version fails."""
    document = sarif_log(synthetic_report)
    bad = copy.deepcopy(document)
    bad["runs"][0]["results"][0]["level"] = "fatal"
    assert _errors(bad)
    bad = copy.deepcopy(document)
    del bad["version"]
    assert _errors(bad)


def test_all_pass_report_has_no_results(synthetic_report):
    from dataclasses import replace

    formats = tuple(replace(f, checks=tuple(replace(c, verdict="PASS", waiver=None) for c in f.checks))
                    for f in synthetic_report.formats)
    document = sarif_log(replace(synthetic_report, formats=formats, waivers=()))
    assert _errors(document) == []
    assert document["runs"][0]["results"] == []
    assert document["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_check_writes_a_valid_sarif_file(memorised, tmp_path, cli):
    code, _, _ = cli("check", memorised["base"], memorised["unlearned"], "--suite", memorised["suite"],
                     "--config", memorised["config"], "-f", "fp,rtn8", "--probes", "verbmem,knowmem,mia",
                     "--threads", "1", "-q", "--out", tmp_path / "out", "--format", "sarif")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "junit.xml", "report.json", "report.md", "report.sarif", "samples.jsonl"]
    document = json.loads((tmp_path / "out" / "report.sarif").read_text())
    assert _errors(document) == []
    results = document["runs"][0]["results"]
    assert {(r["properties"]["format"], r["properties"]["check"]) for r in results} == {
        (f, c) for f in ("fp", "rtn8") for c in ("forget_retention.verbmem", "forget_retention.knowmem")}
    assert {r["level"] for r in results} == {"error"}
    assert document["runs"][0]["artifacts"][0]["hashes"]["sha-256"]
