"""Error types that map one-to-one onto the CLI's exit codes.

Exit codes: 0 all checks pass, 1 a gating check failed, 2 usage or input error,
3 something could not be measured (a probe or format crashed, out of memory).
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_INPUT = 2
EXIT_MEASURE = 3


class AuditqError(Exception):
    """Base error: carries the exit code the CLI should use and a one-line message."""

    exit_code = EXIT_MEASURE


class InputError(AuditqError):
    """Bad user input: missing files, malformed suites, incompatible checkpoints (exit 2)."""

    exit_code = EXIT_INPUT


class MeasurementError(AuditqError):
    """A format or probe could not be measured (exit 3)."""

    exit_code = EXIT_MEASURE


class BackendUnavailable(AuditqError):
    """An optional backend (gguf, gptq, bnb) is not installed; the row becomes UNKNOWN."""

    exit_code = EXIT_MEASURE

    def __init__(self, message: str, install_hint: str = "") -> None:
        super().__init__(message + (f" ({install_hint})" if install_hint else ""))
        self.install_hint = install_hint
