"""Guarded JSON and TOML parsing: a nesting-depth limit checked without recursion, before the parser runs.

json.loads and tomllib.loads recurse once per nesting level, so a document of a few kilobytes of
`[[[[...` raises RecursionError — an exception no caller expects from a parser, which surfaced as a
crash (exit 3) in config.json, a safetensors header, suite.toml, a jsonl record, --config, --waivers,
report.json and cache entries. Every parse goes through `loads_json` / `loads_toml`: the depth is
counted by a flat scan over the brackets outside strings (and TOML comments), and a document deeper
than MAX_DEPTH is refused with one line naming the file (InputError, exit 2; a cache entry drops it).
No file auditq reads legitimately nests more than about ten levels.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from auditq.errors import InputError

#: deepest nesting accepted; far above any real auditq input, far below the parsers' recursion limits
MAX_DEPTH = 100

_JSON_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOML_SKIPPED = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*')
_BRACKETS = re.compile(r"[\[\]{}]")


class TooDeep(InputError, ValueError):
    """A document nested deeper than MAX_DEPTH: an InputError (exit 2, one line), and a ValueError like
    json's own decode errors, so a caller that treats unparsable JSON as damaged (a cache entry: dropped
    and re-measured) treats this one the same way."""


def nesting_depth(text: str, toml: bool = False) -> int:
    """Deepest bracket nesting outside strings (and comments, for TOML), counted without recursion."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # cannot be too deep: skip the scan
        return 0
    bare = (_TOML_SKIPPED if toml else _JSON_STRINGS).sub("", text)
    steps = (1 if c in "[{" else -1 for c in _BRACKETS.findall(bare))
    return max(accumulate(steps, initial=0))


def _check(text: str, what: object, toml: bool) -> None:
    depth = nesting_depth(text, toml)
    if depth > MAX_DEPTH:
        kind = "TOML" if toml else "JSON"
        raise TooDeep(f"{what}: {kind} nested {depth} levels deep (more than {MAX_DEPTH}): refused")


def loads_json(text: str | bytes, what: object) -> Any:
    """json.loads after the depth check; `what` (the file) names the input in the error.

    json's own errors (ValueError) pass through for the caller's message; RecursionError never escapes.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    _check(text, what, toml=False)
    try:
        return json.loads(text)
    except RecursionError:  # only if the scan missed a shape: still one line, never a crash
        raise TooDeep(f"{what}: JSON nested too deep to parse: refused") from None


def loads_toml(text: str, what: object) -> dict[str, Any]:
    """tomllib.loads after the depth check; tomllib's TOMLDecodeError passes through."""
    import tomllib

    _check(text, what, toml=True)
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise TooDeep(f"{what}: TOML nested too deep to parse: refused") from None
