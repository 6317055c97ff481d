"""Calibration text for the formats that need it, checked in the light stage (issue 24, class 4): GPTQ and
AWQ calibrate on it, Wanda pruning scores weights by its activations, relearn:generic trains on it. With
no non-blank line (an empty suite calibration file, a retain split of QA pairs only) those formats used to
fail mid-audit, after BASE had been measured, as an UNKNOWN row."""

from __future__ import annotations

from typing import Any, Optional

from auditq.errors import InputError


def needs_calibration(parsed: Any) -> bool:
    """Whether a parsed format (auditq.formats.ParsedFormat, a stack's parts included) reads calibration text."""
    if parsed.parts:
        return any(needs_calibration(p) for p in parsed.parts)
    family, options = parsed.spec.family, parsed.options
    return (family in ("gptq", "awq") or (family == "prune" and getattr(options, "method", None) == "wanda")
            or (family == "relearn" and getattr(options, "source", None) == "generic"))


def check_calibration_text(parsed_formats: tuple[Any, ...], calibration: Optional[str],
                           calibration_lines: Optional[tuple[str, ...]], suite: Any) -> None:
    """InputError naming the first format that needs calibration text when the text it would get is empty."""
    needing = [p.spec.raw for p in parsed_formats if needs_calibration(p)]
    if not needing:
        return
    if calibration == "forget":
        texts: tuple[str, ...] = tuple(r.text for r in suite.forget.texts)
        source = "--calibration forget (the forget texts)"
    elif calibration_lines is not None:
        texts, source = calibration_lines, f"--calibration {calibration}"
    else:
        texts = suite.calibration_texts()
        source = (f"{suite.path / suite.settings.calibration} (suite.toml calibration)" if suite.settings.calibration
                  else f"{suite.path / 'retain.jsonl'} (its text records: the default calibration text)")
    if not any(t.strip() for t in texts):
        raise InputError(f"--formats {needing[0]} needs calibration text, but {source} has none; give a text file "
                         "with --calibration or add text records")
