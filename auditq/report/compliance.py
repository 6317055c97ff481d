"""The pre-release gate's command-line plumbing: report formats, --fail-on, re-rendering, the cache.

Kept out of cli.py so that the commands there stay thin.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from auditq.errors import InputError
from auditq.regular_file import read_text, require_regular
from auditq.safe_parse import loads_json

#: report files `--format` can add to --out (json, md and junit are always written by `check`)
REPORT_FORMATS = ("json", "md", "junit", "sarif", "html")
#: what `auditq report` renders when no --format is given
RERENDER_DEFAULT = ("md", "html", "sarif", "junit")
FAIL_ON = ("fail", "inconclusive", "never")
SUPPORTED_SCHEMA_MAJOR = "1"


def parse_report_formats(values: Iterable[str]) -> tuple[str, ...]:
    """'sarif,html' (repeatable) -> ('sarif', 'html'); InputError on an unknown name."""
    names = tuple(dict.fromkeys(v.strip().lower() for value in values for v in value.split(",") if v.strip()))
    unknown = [n for n in names if n not in REPORT_FORMATS]
    if unknown:
        raise InputError(f"--format {', '.join(unknown)}: unknown report format (known: {', '.join(REPORT_FORMATS)})")
    return names


def check_writers(report_formats: Iterable[str], out_dir: Path | None) -> tuple[str, ...]:
    """Writers for `check --out`: the defaults plus any --format extras."""
    from auditq.report import DEFAULT_WRITERS

    extra = parse_report_formats(report_formats)
    if extra and out_dir is None:
        raise InputError(f"--format {','.join(extra)} needs --out DIR to write the report files to")
    return tuple(dict.fromkeys((*DEFAULT_WRITERS, *extra)))


def resolve_fail_on(fail_on: str | None, allow_inconclusive: bool) -> str:
    """--fail-on, with --allow-inconclusive as an alias of --fail-on fail."""
    if fail_on is not None:
        fail_on = fail_on.strip().lower()
        if fail_on not in FAIL_ON:
            raise InputError(f"--fail-on {fail_on!r}: expected one of {', '.join(FAIL_ON)}")
        if allow_inconclusive and fail_on != "fail":
            raise InputError(f"--allow-inconclusive means --fail-on fail; it contradicts --fail-on {fail_on}")
        return fail_on
    return "fail" if allow_inconclusive else "inconclusive"


def load_report(path: Path):
    """report.json -> AuditReport (no measuring); InputError (exit 2) when it is not one we can read."""
    from auditq.report.json_writer import report_from_dict

    if not os.path.lexists(path):
        raise InputError(f"report {path} does not exist")
    require_regular(path, "report")  # a FIFO, a directory, a loop: named as what it is, never read
    try:
        data = loads_json(read_text(path, "report"), path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data or "formats" not in data:
        raise InputError(f"{path}: not an auditq report.json (no schema_version / formats)")
    major = str(data["schema_version"]).split(".")[0]
    if major != SUPPORTED_SCHEMA_MAJOR:
        raise InputError(f"{path}: report schema {data['schema_version']} is not supported by this auditq "
                         f"(reads {SUPPORTED_SCHEMA_MAJOR}.x)")
    from auditq.report.read_check import check_report_types

    check_report_types(data, path)
    try:
        return report_from_dict(data)
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise InputError(f"{path}: not a readable auditq report.json ({type(exc).__name__}: {first})") from None


def rerender(report_json: Path, formats: Iterable[str], out_dir: Path | None) -> list[Path]:
    """Write the chosen report files from report.json, atomically, without re-measuring."""
    from auditq.report import write_reports

    names = parse_report_formats(formats) or RERENDER_DEFAULT
    if out_dir is not None:
        from auditq.report.outdir import check_not_protected

        check_not_protected(out_dir)  # never write into the live result cache or beside its key
    report = load_report(report_json)
    target = out_dir if out_dir is not None else report_json.parent
    try:
        return write_reports(target, report, writers=names)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a field no type check above covers
        first = (str(exc).splitlines() or [""])[0]
        raise InputError(f"{report_json}: cannot render this report.json ({type(exc).__name__}: {first})") from None


def make_cache(use_cache: bool):
    from auditq.cache.store import ResultCache

    if not use_cache:
        return None
    cache = ResultCache()
    from auditq.cache.key import signing_key

    signing_key(cache.directory)  # a bad key file or secret is bad input: exit 2 before any model is loaded
    return cache
