"""Waivers: an accepted, time-limited exception to one check in one format.

A waiver is keyed on check × format, never on samples::

    # auditq-waivers.toml  (or [[tool.auditq.waivers]] in pyproject.toml, [[waivers]] in auditq.toml)
    [[waivers]]
    check = "recovery.verbmem"      # a family (recovery) or a full check id (recovery.verbmem)
    format = "rtn4"                 # the format name exactly as in the report
    reason = "4-bit build is not shipped before the Q3 re-unlearning, see TICKET-123"
    expires = 2026-09-30            # a TOML date (or "YYYY-MM-DD"); the waiver holds through that day
    owner = "ml-compliance"         # optional
    ticket = "TICKET-123"           # optional

While it holds, a FAIL or INCONCLUSIVE verdict of a matching check becomes WAIVED (and does not
fail the gate); UNKNOWN is never waived (a tool that could not measure is not a finding). Once
expired, the waiver stops applying and the check's message says so. Every waiver is listed in
the report with its status: ``applied``, ``expired``, ``not_needed`` (it matched only checks
that pass) or ``unmatched`` (no check × format in this audit has that key).

The date is today's UTC date unless `today` is passed (tests) or AUDITQ_TODAY=YYYY-MM-DD is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import tomllib

from auditq.errors import InputError
from auditq.regular_file import present, read_text
from auditq.result.model import FAIL, INCONCLUSIVE, NOT_REQUESTED, UNKNOWN, WAIVED, CheckResult, FormatResult
from auditq.safe_parse import loads_toml

FAMILIES = ("forget_retention", "recovery", "privleak", "utility")
CHECK_IDS = ("forget_retention.verbmem", "forget_retention.knowmem", "recovery.verbmem", "recovery.knowmem",
             "privleak", "utility", "forget_retention.mcq", "recovery.mcq", "utility.mcq")
REQUIRED = ("check", "format", "reason", "expires")
OPTIONAL = ("owner", "ticket")
WAIVABLE = (FAIL, INCONCLUSIVE)

DEFAULT_FILE = "auditq-waivers.toml"


@dataclass(frozen=True)
class Waiver:
    check: str
    format: str
    reason: str
    expires: date
    source: str
    owner: str | None = None
    ticket: str | None = None

    def matches(self, check: CheckResult) -> bool:
        if check.format != self.format:
            return False
        return self.check == check.check or self.check == check.family

    def expired(self, today: date) -> bool:
        return today > self.expires

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "format": self.format, "reason": self.reason,
                               "expires": self.expires.isoformat(), "source": self.source}
        if self.owner:
            out["owner"] = self.owner
        if self.ticket:
            out["ticket"] = self.ticket
        return out


def today_utc() -> date:
    """The gate's clock: AUDITQ_TODAY=YYYY-MM-DD if set (reproducible CI and tests), else today in UTC."""
    fixed = os.environ.get("AUDITQ_TODAY")
    if fixed:
        try:
            return date.fromisoformat(fixed.strip())
        except ValueError:
            raise InputError(f"AUDITQ_TODAY={fixed!r} is not a date (expected YYYY-MM-DD)") from None
    return datetime.now(timezone.utc).date()


def _parse_date(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InputError(f"{where}.expires must be a date such as 2026-09-30, got {value!r}")


def parse_waiver(entry: Any, where: str) -> Waiver:
    """One waiver table -> Waiver, or InputError (exit 2) naming the file and entry."""
    if not isinstance(entry, dict):
        raise InputError(f"{where}: a waiver must be a table with {', '.join(REQUIRED)}")
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        hint = " (waivers are keyed on check × format, never on samples)" if any(
            k in {"sample", "samples", "index", "indices", "id", "ids", "record_id"} for k in unknown) else ""
        raise InputError(f"{where}: unknown waiver key(s) {', '.join(unknown)}{hint}; "
                         f"expected {', '.join(REQUIRED + OPTIONAL)}")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise InputError(f"{where}: waiver is missing {', '.join(missing)}")
    check, fmt, reason = entry["check"], entry["format"], entry["reason"]
    if not isinstance(check, str) or check not in FAMILIES + CHECK_IDS:
        raise InputError(f"{where}.check {check!r} is not a check family or id "
                         f"(known: {', '.join(dict.fromkeys(FAMILIES + CHECK_IDS))})")
    if not isinstance(fmt, str) or not fmt.strip():
        raise InputError(f"{where}.format must be a format name such as rtn4")
    if not isinstance(reason, str) or not reason.strip():
        raise InputError(f"{where}.reason must say why the check is waived")
    extras = {}
    for key in OPTIONAL:
        if key in entry:
            if not isinstance(entry[key], str):
                raise InputError(f"{where}.{key} must be a string")
            extras[key] = entry[key]
    return Waiver(check=check, format=fmt.strip().lower(), reason=reason.strip(),
                  expires=_parse_date(entry["expires"], where), source=where, **extras)


def _read(path: Path) -> dict[str, Any]:
    try:
        return loads_toml(read_text(path, "--waivers"), path)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read waivers: {exc}") from None


def _entries(table: Any, where: str) -> list[Waiver]:
    if table is None:
        return []
    if not isinstance(table, list):
        raise InputError(f"{where}: 'waivers' must be an array of tables ([[waivers]])")
    return [parse_waiver(entry, f"{where}: waivers[{i}]") for i, entry in enumerate(table)]


def load_waivers(directory: Path, waivers_file: Path | None = None, config_file: Path | None = None) -> tuple[Waiver, ...]:
    """Waivers from pyproject.toml [[tool.auditq.waivers]], auditq.toml (or --config) and
    auditq-waivers.toml (or `waivers_file`), in that order."""
    found: list[Waiver] = []
    pyproject = directory / "pyproject.toml"
    from auditq.verdict.config import _tool_table

    if present(pyproject):
        found += _entries((_tool_table(_read(pyproject), str(pyproject)) or {}).get("waivers"), str(pyproject))
    toml_path = config_file if config_file is not None else directory / "auditq.toml"
    if present(toml_path, "--config" if config_file is not None else ""):
        data = _read(toml_path)
        data = _tool_table(data, str(toml_path), default=data)
        found += _entries(data.get("waivers"), str(toml_path))
    if waivers_file is not None and not present(waivers_file, "--waivers"):
        raise InputError(f"waivers file {waivers_file} does not exist")
    path = waivers_file if waivers_file is not None else directory / DEFAULT_FILE
    if present(path, "--waivers" if waivers_file is not None else ""):
        data = _read(path)
        unknown = sorted(set(data) - {"waivers"})
        if unknown:
            raise InputError(f"{path}: unknown top-level key(s) {', '.join(unknown)} (expected [[waivers]])")
        found += _entries(data.get("waivers"), str(path))
    return tuple(found)


def apply_waivers(results: Iterable[FormatResult], waivers: Iterable[Waiver],
                  today: date) -> tuple[list[FormatResult], tuple[dict[str, Any], ...]]:
    """Mark waived checks, note expired waivers on the checks they no longer cover, and say what
    became of every waiver. A specific check id wins over a family waiver for the same check."""
    waivers = list(waivers)
    results = list(results)
    if not waivers:
        return results, ()
    matched: dict[int, list[str]] = {i: [] for i in range(len(waivers))}
    used: dict[int, list[str]] = {i: [] for i in range(len(waivers))}
    expired_hits: dict[int, list[str]] = {i: [] for i in range(len(waivers))}
    order = sorted(range(len(waivers)), key=lambda i: ("." not in waivers[i].check, i))
    new_results = []
    for fmt in results:
        checks = []
        for check in fmt.checks:
            hits = [i for i in order if waivers[i].matches(check)]
            for i in hits:
                matched[i].append(f"{check.format}/{check.check}")
            if not hits or check.verdict not in WAIVABLE:
                checks.append(check)
                continue
            live = [i for i in hits if not waivers[i].expired(today)]
            if live:
                w = waivers[live[0]]
                used[live[0]].append(f"{check.format}/{check.check}")
                info = {**w.describe(), "status": "applied", "original_verdict": check.verdict}
                message = f"{check.message}; waived until {w.expires.isoformat()}: {w.reason}".lstrip("; ")
                checks.append(replace(check, verdict=WAIVED, waiver=info, message=message))
            else:
                w = waivers[hits[0]]
                for i in hits:
                    expired_hits[i].append(f"{check.format}/{check.check}")
                info = {**w.describe(), "status": "expired", "original_verdict": check.verdict}
                message = (f"{check.message}; waiver expired on {w.expires.isoformat()} and no longer applies "
                           f"({w.reason})").lstrip("; ")
                checks.append(replace(check, waiver=info, message=message))
        new_results.append(replace(fmt, checks=tuple(checks)))
    statuses = []
    for i, w in enumerate(waivers):
        if used[i]:
            status, detail = "applied", f"waives {', '.join(used[i])}"
        elif w.expired(today) and (expired_hits[i] or matched[i]):
            status = "expired"
            detail = (f"expired on {w.expires.isoformat()}; "
                      + (f"{', '.join(expired_hits[i])} fail(s) again" if expired_hits[i] else
                         _quiet(new_results, matched[i])))
        elif matched[i]:
            status = "not_needed"
            unknown = [m for m in matched[i] if _verdict(new_results, m) == UNKNOWN]
            asked = [m for m in matched[i] if _verdict(new_results, m) != NOT_REQUESTED]
            detail = (f"matched {', '.join(matched[i])}, nothing to waive"
                      + (" (UNKNOWN is never waived)" if unknown else "")
                      + ("" if asked else " (not requested: their probes were not in --probes)"))
        else:
            status = "unmatched"
            detail = f"no check {w.check!r} in format {w.format!r} in this audit"
        if w.expired(today) and status != "expired":
            detail += f"; expired on {w.expires.isoformat()}"
        statuses.append({**w.describe(), "status": status, "detail": detail})
    return new_results, tuple(statuses)


def _quiet(results: list[FormatResult], matched: list[str]) -> str:
    """Why an expired waiver has nothing to fail: its checks pass, or were not run (never 'pass' for those)."""
    if all(_verdict(results, m) == NOT_REQUESTED for m in matched):
        return "its checks were not requested in this run (their probes were not in --probes)"
    return "its checks pass now"


def _verdict(results: list[FormatResult], key: str) -> str | None:
    fmt, _, name = key.partition("/")
    for result in results:
        for check in result.checks:
            if check.format == fmt and check.check == name:
                return check.verdict
    return None
