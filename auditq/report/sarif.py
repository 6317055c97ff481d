"""report.sarif: SARIF 2.1.0 for code-scanning UIs (GitHub, GitLab, Azure DevOps).

- one rule per check family (forget_retention, recovery, privleak, utility), its default level
  from the configured severity;
- one result per format × check that FAILs or is INCONCLUSIVE (WAIVED ones too, carrying an
  accepted external suppression with the waiver's reason); level: gating FAIL -> error,
  gating INCONCLUSIVE -> warning, warn-severity FAIL -> warning, warn-severity INCONCLUSIVE -> note;
- the message gives value, interval, threshold and n; the location is the unlearned checkpoint's
  weights file, the base (and retrain) checkpoints are related locations, and every checkpoint
  file is listed under `artifacts` with its sha-256;
- UNKNOWN checks (a format or probe could not run) are tool execution notifications of the
  invocation, not results: they say nothing about the model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from auditq.report.base import ReportWriter, describe_check, fmt_number, provenance_label
from auditq.report.escape import visible
from auditq.result.model import FAIL, INCONCLUSIVE, UNKNOWN, WAIVED, AuditReport, CheckResult

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://arxiv.org/abs/2410.16454"

RULES: dict[str, dict[str, str]] = {
    "forget_retention": {
        "name": "ForgetRetention",
        "short": "The unlearned model still retains the forget set at this precision",
        "full": "Forget-set VerbMem / KnowMem retention at the same precision: (unlearned - floor) / (base - floor), "
                "floor = the base model's score on holdout records it never saw (config retention = 'ratio': "
                "unlearned / base); with --retrain compared with the retrain model's retention plus a margin.",
    },
    "recovery": {
        "name": "QuantizationRecovery",
        "short": "Quantization brings forgotten knowledge back",
        "full": "Forget retention at this format minus forget retention at full precision: the failure of "
                "Zhang et al., 'Catastrophic Failure of LLM Unlearning via Quantization' (ICLR 2025).",
    },
    "privleak": {
        "name": "PrivacyLeakage",
        "short": "Membership inference still separates the forget set from holdout data",
        "full": "MUSE's PrivLeak = (AUC_unlearned - AUC_retrain) / AUC_retrain * 100, Min-K% (k = 0.4) AUCs with "
                "forget labelled 0 and holdout 1; AUC_retrain from the retrain model at the same precision, else "
                "0.5. Near 0 is good; negative = under-unlearned, positive = over-unlearned.",
    },
    "utility": {
        "name": "RetainedUtility",
        "short": "Unlearning (or quantization) destroyed utility on the retain set",
        "full": "Retain-set KnowMem of the unlearned model divided by the base model's at the same precision.",
    },
    "forget_quality": {
        "name": "TofuForgetQuality",
        "short": "TOFU forget quality: the forget truth ratios differ from the retrain model's",
        "full": "TOFU's forget quality as open-unlearning computes it: the two-sample KS-test p-value of the "
                "unlearned model's forget truth ratios against the retrain model's at the same format.",
    },
    "tofu_probability": {
        "name": "TofuAnswerProbability",
        "short": "The unlearned model still gives the forget answers high probability",
        "full": "TOFU's answer probability (exp of the mean per-token NLL of answer + EOS) on forget QA, unlearned "
                "divided by base at the same precision; with --retrain compared with the retrain model's ratio.",
    },
    "model_utility": {
        "name": "TofuModelUtility",
        "short": "TOFU model utility on the retain set dropped",
        "full": "TOFU's model utility (harmonic mean of retain answer probability, ROUGE-L recall and truth "
                "ratio) of the unlearned model divided by the base model's at the same precision.",
    },
}

#: rule families a report lists only when it has such a check
OPTIONAL_FAMILIES = ("forget_quality", "tofu_probability", "model_utility")

def _level(check: CheckResult) -> str:
    verdict = (check.waiver or {}).get("original_verdict", check.verdict) if check.verdict == WAIVED else check.verdict
    if check.gating:
        return "error" if verdict == FAIL else "warning"
    return "warning" if verdict == FAIL else "note"


def _uri(path: str) -> dict[str, str]:
    """An artifactLocation for a local path: relative paths stay relative to the source root."""
    posix = path.replace("\\", "/")
    if posix.startswith("/"):
        return {"uri": "file://" + quote(posix)}
    clean = str(PurePosixPath(posix))
    return {"uri": quote("" if clean == "." else clean), "uriBaseId": "SRCROOT"}


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/\\") + "/" + name


def _primary_file(files: dict[str, str]) -> str | None:
    weights = sorted(n for n in files if n.endswith(".safetensors"))
    if weights:
        return weights[0]
    return "config.json" if "config.json" in files else next(iter(sorted(files)), None)


class SarifWriter(ReportWriter):
    filename = "report.sarif"

    def render(self, report: AuditReport) -> str:
        return json.dumps(sarif_log(report), indent=2, ensure_ascii=False) + "\n"


def sarif_log(report: AuditReport) -> dict[str, Any]:
    # the TOFU families (auditq.verdict.tofu) are listed only when the audit ran them
    present = {c.family for c in report.all_checks()}
    families = [f for f in RULES if f not in OPTIONAL_FAMILIES or f in present]
    rules = _rules(report, families)
    artifacts, primary = _artifacts(report)
    results = []
    notifications = []
    sources = {f.format: {role: provenance_label(m) for role, m in f.roles.items()} for f in report.formats}
    for check in report.all_checks():
        if check.verdict == UNKNOWN:
            notifications.append(_notification(check))
            continue
        if check.verdict not in (FAIL, INCONCLUSIVE, WAIVED):
            continue
        results.append(_result(check, families, sources, primary))
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "auditq", "version": report.tool_version, "semanticVersion": report.tool_version,
                            "informationUri": INFO_URI, "rules": rules}},
        "invocations": [_invocation(report, notifications)],
        "originalUriBaseIds": {"SRCROOT": {"description": {"text": "the directory auditq ran in"}}},
        "artifacts": artifacts,
        "results": results,
        "properties": {"schemaVersion": report.schema_version, "created": report.created,
                       "suite": {"name": report.suite.get("name"), "sha256": report.suite.get("sha256")}},
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _rules(report: AuditReport, families: list[str]) -> list[dict[str, Any]]:
    """One reportingDescriptor per check family, with the audit's threshold, comparator and severity."""
    severities = {name: entry.get("severity", "error") for name, entry in (report.config.get("checks") or {}).items()}
    rules = []
    for family in families:
        spec = RULES[family]
        policy = (report.config.get("checks") or {}).get(family, {})
        rules.append({
            "id": family,
            "name": spec["name"],
            "shortDescription": {"text": spec["short"]},
            "fullDescription": {"text": spec["full"]},
            "helpUri": INFO_URI,
            "help": {"text": f"{spec['full']} Rule: value {policy.get('comparator', '')} "
                             f"{fmt_number(policy.get('threshold'))}; verdicts from a bootstrap 95% interval "
                             "(PASS: whole interval passes, FAIL: whole interval fails, otherwise INCONCLUSIVE)."},
            "defaultConfiguration": {"level": "error" if severities.get(family, "error") == "error" else "warning"},
            "properties": {"threshold": policy.get("threshold"), "comparator": policy.get("comparator"),
                           "severity": severities.get(family)},
        })
    return rules


def _artifacts(report: AuditReport) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(every checkpoint file with its sha-256, {role: the artifactLocation results point at})."""
    artifacts: list[dict[str, Any]] = []
    artifact_index: dict[str, int] = {}
    primary: dict[str, dict[str, Any]] = {}
    for role, info in report.checkpoints.items():
        files = info.get("files") or {}
        for name in sorted(files):
            location = _uri(_join(info["path"], name))
            artifact_index[f"{role}/{name}"] = len(artifacts)
            artifacts.append({"location": location, "hashes": {"sha-256": files[name]},
                              "roles": ["analysisTarget"] if role == "unlearned" else ["referencedOnCommandLine"],
                              "description": {"text": f"{role} checkpoint file"}})
        main = _primary_file(files)
        location = dict(_uri(_join(info["path"], main) if main else info["path"]))
        if main:
            location["index"] = artifact_index[f"{role}/{main}"]
        primary[role] = location
    return artifacts, primary


def _notification(check) -> dict[str, Any]:
    """A check that could not be measured: a tool execution notification, never a result."""
    return {
        "level": "error" if check.gating else "warning",
        "message": {"text": visible(f"{check.format} {check.check} could not be measured: {check.message}")},
        "descriptor": {"id": check.family},
        "properties": {"format": check.format, "check": check.check},
    }


def _result(check, families: list[str], sources: dict[str, dict[str, str]],
            primary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The SARIF result of a FAIL, INCONCLUSIVE or WAIVED check (a waiver becomes an accepted suppression)."""
    shown = (check.waiver or {}).get("original_verdict", check.verdict) if check.verdict == WAIVED else check.verdict
    text = (f"{check.check} at {check.format}: {shown}"
            + (" (waived)" if check.verdict == WAIVED else "")
            + f" — value {describe_check(check)}; {check.message}")
    result: dict[str, Any] = {
        "ruleId": check.family,
        "ruleIndex": families.index(check.family) if check.family in families else -1,
        "level": _level(check),
        "kind": "fail",
        "message": {"text": visible(text + "; source: " + ", ".join(
            f"{role} {label}" for role, label in sources.get(check.format, {}).items()))},
        "locations": [{"physicalLocation": {"artifactLocation": primary.get("unlearned", {"uri": "unlearned"})},
                       "message": {"text": "unlearned checkpoint"}}],
        "relatedLocations": [
            {"id": i, "physicalLocation": {"artifactLocation": primary[role]},
             "message": {"text": f"{role} checkpoint"}}
            for i, role in enumerate(r for r in ("base", "retrain", "reference") if r in primary)],
        "partialFingerprints": {
            "auditqCheck/v1": hashlib.sha256(f"{check.check}|{check.format}".encode()).hexdigest()},
        "properties": {
            "format": check.format, "check": check.check, "verdict": check.verdict, "severity": check.severity,
            "value": check.value, "ciLow": check.ci_low, "ciHigh": check.ci_high,
            "threshold": check.threshold, "comparator": check.comparator, "n": check.n,
            "provenance": sources.get(check.format, {}),
        },
    }
    if result["ruleIndex"] < 0:
        del result["ruleIndex"]
    if check.verdict == WAIVED and check.waiver:
        w = check.waiver
        result["suppressions"] = [{
            "kind": "external", "status": "accepted",
            "justification": visible(f"{w.get('reason', '')} (expires {w.get('expires', '?')}; {w.get('source', '')})"),
        }]
    return result


def _invocation(report: AuditReport, notifications: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's invocation: success (nothing unmeasured), exit code, and the notifications about checks and
    waivers."""
    config_notes = [{"level": "warning" if w["status"] in ("expired", "unmatched") else "note",
                     "message": {"text": visible(f"waiver {w['check']} × {w['format']} ({w['source']}): {w['status']} — "
                                                 f"{w.get('detail', '')}")}}
                    for w in report.waivers]
    invocation: dict[str, Any] = {
        "executionSuccessful": not notifications,
        "exitCode": report.exit_code,
        "properties": {"verdict": report.verdict, "arguments": report.arguments, "cache": report.cache},
    }
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    if config_notes:
        invocation["toolConfigurationNotifications"] = config_notes
    return invocation
