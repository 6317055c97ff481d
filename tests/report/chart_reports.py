"""Reports that stress the charts: a negative floored retention (the fp VerbMem -0.188 a user saw
clipped off below the axis), a retention above 1, an interval reaching past both, and no retain-set
KnowMem at all (the utility chart's left panel empty: the case that raised matplotlib's "No artists
with labels found to put in legend")."""

from __future__ import annotations

from dataclasses import replace

from report_helpers import make_report

from auditq.result.model import AuditReport, CheckResult

#: (format, check) -> (value, ci_low, ci_high, raw_ratio)
EDGE_RETENTION = {("fp", "forget_retention.verbmem"): (-0.188, -0.31, -0.07, 0.21),
                  ("rtn4", "forget_retention.verbmem"): (1.32, 1.1, 1.55, 0.83),
                  ("rtn4", "forget_retention.knowmem"): (0.4, -0.45, 0.9, 0.7)}


def _edge_check(check: CheckResult, mode: str) -> CheckResult:
    numbers = EDGE_RETENTION.get((check.format, check.check))
    if numbers is None:
        return check
    value, low, high, raw = numbers
    if mode == "ratio":  # the checks judge the raw ratio itself
        value, low, high = raw, raw - 0.05, raw + 0.05
    return replace(check, value=value, ci_low=low, ci_high=high, extras={"retention": mode, "raw_ratio": raw})


def edge_report(mode: str = "floor", retain_knowmem: bool = False) -> AuditReport:
    report = make_report()
    formats = []
    for fmt in report.formats:
        roles = {name: (m if retain_knowmem else replace(m, knowmem_retain=None, intervals={
            k: v for k, v in m.intervals.items() if k != "knowmem_retain"})) for name, m in fmt.roles.items()}
        formats.append(replace(fmt, roles=roles, checks=tuple(_edge_check(c, mode) for c in fmt.checks)))
    return replace(report, formats=tuple(formats), config={**report.config, "retention": mode})
