"""Type checks of a report.json read back by `auditq report`: a string where a number belongs is an input
error (exit 2) naming the field, not a crash in a writer (exit 3)."""

from __future__ import annotations

from typing import Any

from auditq.errors import InputError
from auditq.result.model import VERDICTS

_NUMBER_OR_NULL = ("value", "ci_low", "ci_high")
_ROLE_NUMBERS = ("verbmem_forget", "knowmem_forget", "knowmem_retain", "retain_nll", "retain_ppl")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_report_types(data: dict[str, Any], path) -> None:
    try:
        _check(data, path)
    except InputError as exc:
        raise InputError(str(exc).replace(f"{path}: ", f"{path}: not a readable auditq report.json: ", 1)) from None


def _check(data: dict[str, Any], path) -> None:
    if not isinstance(data.get("formats"), list):
        raise InputError(f"{path}: formats = {data.get('formats')!r}: expected a list")
    for i, fmt in enumerate(data["formats"]):
        where = f"{path}: formats[{i}]"
        if not isinstance(fmt, dict) or not isinstance(fmt.get("checks"), list) or not isinstance(fmt.get("roles"), dict):
            raise InputError(f"{where}: expected an object with 'checks' (list) and 'roles' (object)")
        for j, check in enumerate(fmt["checks"]):
            at = f"{where}.checks[{j}]"
            if not isinstance(check, dict):
                raise InputError(f"{at}: expected an object")
            for key in _NUMBER_OR_NULL:
                if check.get(key) is not None and not _is_number(check.get(key)):
                    raise InputError(f"{at}.{key} = {check.get(key)!r}: expected a number or null")
            if not _is_number(check.get("threshold")):
                raise InputError(f"{at}.threshold = {check.get('threshold')!r}: expected a number")
            if isinstance(check.get("n"), bool) or not isinstance(check.get("n"), int):
                raise InputError(f"{at}.n = {check.get('n')!r}: expected an integer")
            if check.get("verdict") not in VERDICTS:
                raise InputError(f"{at}.verdict = {check.get('verdict')!r}: expected one of {', '.join(VERDICTS)}")
            if check.get("comparator") not in ("<=", ">=", "abs<="):
                raise InputError(f"{at}.comparator = {check.get('comparator')!r}: expected <=, >= or abs<=")
            for key in ("check", "family", "format", "severity", "message"):
                if not isinstance(check.get(key), str):
                    raise InputError(f"{at}.{key} = {check.get(key)!r}: expected a string")
        for role, metrics in fmt["roles"].items():
            if not isinstance(metrics, dict):
                raise InputError(f"{where}.roles.{role}: expected an object")
            for key in _ROLE_NUMBERS:
                if metrics.get(key) is not None and not _is_number(metrics.get(key)):
                    raise InputError(f"{where}.roles.{role}.{key} = {metrics.get(key)!r}: expected a number or null")
