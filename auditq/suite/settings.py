"""Type and value checks of a suite's [probes] settings (one line naming the file, setting, value, expectation).

TOML's types are kept strict: `prefix_tokens = true` is not 1, `"16"` and `16.5` are not 16, and a
`qa_template` must contain `{question}` exactly once and no other placeholder (KnowMem would
otherwise ask one fixed prompt, or crash on `str.format`).
"""

from __future__ import annotations

import math
import string
from pathlib import Path
from typing import Any

from auditq.errors import InputError
from auditq.limits import check_number
from auditq.regular_file import present, resolve

POSITIVE_INTS = ("prefix_tokens", "max_new_tokens", "answer_tokens")


def check_positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{where} = {value!r}: expected a positive integer")
    return value


def check_mink_k(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1:
        raise InputError(f"{where} = {value!r}: expected a number in (0, 1]")
    return float(value)


def check_qa_template(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where} = {value!r}: expected a string containing {{question}} once")
    try:
        parsed = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(value)
                  if name is not None]
    except ValueError as exc:
        raise InputError(f"{where} = {value!r}: not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    fields = [name for name, _, _ in parsed]
    decorated = next((f"{{{n}{'!' + c if c else ''}{':' + s if s else ''}}}" for n, s, c in parsed if s or c), None)
    if decorated:  # str.format would raise on '!z' or a nested '{x}' only when KnowMem runs, mid-audit
        raise InputError(f"{where} = {value!r}: placeholder {decorated} has a conversion or format spec "
                         "(only plain {question} is allowed)")
    others = sorted({f for f in fields if f != "question"})
    if others:
        raise InputError(f"{where} = {value!r}: unknown placeholder(s) {', '.join('{' + f + '}' for f in others)} "
                         "(only {question} is filled in)")
    if fields.count("question") != 1:
        raise InputError(f"{where} = {value!r}: expected {{question}} exactly once, found {fields.count('question')}")
    return value


def check_calibration(value: Any, where: str, suite_dir: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where} = {value!r}: expected a file name inside the suite directory")
    root = resolve(suite_dir)
    target = resolve(suite_dir / value, where)  # a loop: one line
    if root not in target.parents:
        raise InputError(f"{where} = {value!r}: the calibration file must lie inside the suite directory {suite_dir}")
    if not present(target, where):  # a FIFO, a device, a dangling link: named, never read
        raise InputError(f"{where} = {value!r}: no such file in {suite_dir}")
    return value


def check_settings(path: Path, probes: dict[str, Any]) -> None:
    """Every [probes] value of suite.toml `path`, strictly typed."""
    for key, value in probes.items():
        where = f"{path}: [probes] {key}"
        if key in POSITIVE_INTS:
            check_positive_int(value, where)
            check_number(key, value, where)  # the shared range (auditq.limits): no 10**12-token continuation
        elif key == "mink_k":
            check_mink_k(value, where)
        elif key == "qa_template":
            check_qa_template(value, where)
        elif key == "calibration":
            check_calibration(value, where, path.parent)
