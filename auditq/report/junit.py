"""junit.xml: one testcase per format × check, so any CI system can display the gate."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from auditq.report.base import ReportWriter, describe_check, provenance_label
from auditq.report.escape import visible
from auditq.result.model import NOT_REQUESTED, AuditReport


class JUnitWriter(ReportWriter):
    filename = "junit.xml"

    def render(self, report: AuditReport) -> str:
        checks = report.all_checks()
        failures = sum(1 for c in checks if c.verdict in {"FAIL", "INCONCLUSIVE"} and c.gating)
        errors = sum(1 for c in checks if c.verdict == "UNKNOWN" and c.gating)
        suites = ET.Element("testsuites", name="auditq", tests=str(len(checks)), failures=str(failures),
                            errors=str(errors))
        for fmt in report.formats:
            fmt_checks = list(fmt.checks)
            suite = ET.SubElement(
                suites, "testsuite", name=f"auditq.{fmt.format}", tests=str(len(fmt_checks)),
                failures=str(sum(1 for c in fmt_checks if c.verdict in {"FAIL", "INCONCLUSIVE"} and c.gating)),
                errors=str(sum(1 for c in fmt_checks if c.verdict == "UNKNOWN" and c.gating)),
                skipped=str(sum(1 for c in fmt_checks if (not c.gating and c.verdict != "PASS")
                                or c.verdict in ("WAIVED", NOT_REQUESTED))))
            for check in fmt_checks:
                case = ET.SubElement(suite, "testcase", classname=f"auditq.{fmt.format}", name=check.check)
                text = visible(f"{check.verdict}: {describe_check(check)}; {check.message}")
                if check.verdict == NOT_REQUESTED:  # not run because not asked for: skipped, never an error
                    ET.SubElement(case, "skipped", message=visible(f"not requested: {check.message}"))
                elif check.verdict == "WAIVED":
                    ET.SubElement(case, "skipped", message=f"waived {text}")
                elif not check.gating and check.verdict != "PASS":
                    ET.SubElement(case, "skipped", message=f"warn-only {text}")
                elif check.verdict in {"FAIL", "INCONCLUSIVE"}:
                    ET.SubElement(case, "failure", message=text, type=check.verdict)
                elif check.verdict == "UNKNOWN":
                    ET.SubElement(case, "error", message=text, type="UNKNOWN")
                sources = "; ".join(f"{role}: {provenance_label(m)}" for role, m in fmt.roles.items())
                ET.SubElement(case, "system-out").text = f"{text}\nsource: {visible(sources)}"
        ET.indent(suites)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
