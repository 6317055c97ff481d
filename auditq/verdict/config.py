"""Thresholds and severities for the verdict checks.

Precedence, lowest to highest: built-in defaults < [tool.auditq] in pyproject.toml
< auditq.toml < command-line flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from auditq.errors import InputError
from auditq.regular_file import present, read_text
from auditq.safe_parse import loads_toml

SEVERITIES = ("error", "warn")
#: MUSE's retrain-model AUCs for PrivLeak (swj0419/muse_bench constants.py AUC_RETRAIN, key
#: forget_holdout_Min-40%; read 2026-12-03): what `--privleak-reference-auc` reproduces MUSE's tables with
MUSE_REFERENCE_AUC = {"news": 0.4772, "books": 0.5393}


@dataclass(frozen=True)
class CheckPolicy:
    """One check family: its threshold, how the value compares with it, and whether it gates."""

    threshold: float
    severity: str
    comparator: str  # "<=" value must be at most threshold; ">=" at least; "abs<=" |value| at most


DEFAULT_CHECKS: dict[str, CheckPolicy] = {
    # forget retention (unlearned / base at the same precision), VerbMem and KnowMem
    "forget_retention": CheckPolicy(0.25, "error", "<="),
    # forget retention at this format minus forget retention at full precision
    "recovery": CheckPolicy(0.10, "error", "<="),
    # |PrivLeak| in percent, Min-K% AUC against the retrain model (or 0.5)
    "privleak": CheckPolicy(20.0, "error", "abs<="),
    # KnowMem on retain, unlearned / base at the same precision
    "utility": CheckPolicy(0.50, "warn", ">="),
    # TOFU (auditq.verdict.tofu): KS p-value vs the retrain model's forget truth ratios (needs --retrain)
    "forget_quality": CheckPolicy(0.05, "error", ">="),
    # TOFU forget answer probability, unlearned / base at the same precision (retrain's ratio + margin with --retrain)
    "tofu_probability": CheckPolicy(0.25, "error", "<="),
    # TOFU model utility (harmonic mean over the suite's retain QA), unlearned / base at the same precision
    "model_utility": CheckPolicy(0.50, "warn", ">="),
}


@dataclass(frozen=True)
class AuditConfig:
    checks: dict[str, CheckPolicy] = field(default_factory=lambda: dict(DEFAULT_CHECKS))
    #: with --retrain: unlearned retention may exceed the retrain model's by this much
    retrain_margin: float = 0.05
    min_n: int = 20
    confidence: float = 0.95
    bootstrap_resamples: int = 1000
    #: forget retention: "floor" = (U - F) / (B - F), F = base's score on holdout (auditq.verdict.retention);
    #: "ratio" = U / B (the raw ratio, reported either way)
    retention: str = "floor"
    sources: tuple[str, ...] = ("defaults",)
    #: PrivLeak's AUC_ref without --retrain (--privleak-reference-auc), in MUSE's convention; None: 0.5, the AUC
    #: of a model that never saw the forget set (forget and holdout come from one distribution). MUSE's own
    #: code uses its retrain models' measured AUCs instead (MUSE_REFERENCE_AUC)
    privleak_reference_auc: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "checks": {k: {"threshold": v.threshold, "severity": v.severity, "comparator": v.comparator}
                       for k, v in self.checks.items()},
            "retrain_margin": self.retrain_margin,
            "min_n": self.min_n,
            "confidence": self.confidence,
            "bootstrap_resamples": self.bootstrap_resamples,
            "retention": self.retention,
            "sources": list(self.sources),
            "privleak_reference_auc": self.privleak_reference_auc,
        }


def _apply_table(config: AuditConfig, table: dict[str, Any], source: str) -> AuditConfig:
    checks = dict(config.checks)
    scalars: dict[str, Any] = {}
    for key, value in table.items():
        if key == "checks":
            if not isinstance(value, dict):
                raise InputError(f"{source}: 'checks' must be a table")
            for name, entry in value.items():
                if name not in checks:
                    raise InputError(f"{source}: unknown check {name!r} (known: {', '.join(checks)})")
                if not isinstance(entry, dict) or set(entry) - {"threshold", "severity"}:
                    raise InputError(f"{source}: checks.{name} takes 'threshold' and 'severity'")
                checks[name] = _updated(checks[name], entry.get("threshold"), entry.get("severity"), f"{source}: checks.{name}")
        elif key == "confidence":
            scalars[key] = _number(value, f"{source}: {key}")
            if not 0 < scalars[key] < 1:
                raise InputError(f"{source}: confidence = {value!r}: expected a number strictly between 0 and 1 (e.g. 0.95)")
        elif key == "retrain_margin":
            scalars[key] = _number(value, f"{source}: {key}")
            if scalars[key] < 0:
                raise InputError(f"{source}: retrain_margin = {value!r}: expected a number >= 0")
        elif key in {"min_n", "bootstrap_resamples"}:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{source}: {key} = {value!r}: expected a positive integer")
            scalars[key] = value
        elif key == "retention":
            if value not in ("floor", "ratio"):
                raise InputError(f"{source}: retention must be 'floor' or 'ratio'")
            scalars[key] = value
        elif key in {"waivers"}:
            continue
        else:
            raise InputError(f"{source}: unknown setting {key!r}")
    _check_schema(table, source)
    return replace(config, checks=checks, sources=config.sources + (source,), **scalars)


def _check_schema(table: dict[str, Any], source: str) -> None:
    """Every setting strictly of its field's type (auditq.schema), after the per-key range checks above: a
    setting added to AuditConfig / CheckPolicy is type-checked without a new line here."""
    from auditq.schema import check_table

    scalars = [f for f in AuditConfig.__dataclass_fields__ if f not in ("checks", "sources")]
    check_table(table, AuditConfig, f"{source}:", keys=scalars)
    for name, entry in (table.get("checks") or {}).items():
        check_table(entry, CheckPolicy, f"{source}: checks.{name}", keys=("threshold", "severity"))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where} = {value!r}: expected a finite number")
    return float(value)


def _updated(policy: CheckPolicy, threshold: Any, severity: Any, where: str) -> CheckPolicy:
    if threshold is not None:
        policy = replace(policy, threshold=_number(threshold, f"{where}.threshold"))
    if severity is not None:
        if severity not in SEVERITIES:
            raise InputError(f"{where}.severity must be one of {', '.join(SEVERITIES)}")
        policy = replace(policy, severity=severity)
    return policy


def _tool_table(data: dict[str, Any], source: str, default: Any = None) -> Any:
    """[tool.auditq] of a parsed TOML file (`default` when absent); InputError when tool/auditq are not tables."""
    tool = data.get("tool")
    if tool is None:
        return default
    if not isinstance(tool, dict):
        raise InputError(f"{source}: tool = {tool!r}: expected a [tool] table")
    table = tool.get("auditq", default)
    if table is not None and table is not default and not isinstance(table, dict):
        raise InputError(f"{source}: tool.auditq = {table!r}: expected a [tool.auditq] table")
    return table


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return loads_toml(read_text(path), path)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read config: {exc}") from None


def load_config(directory: Path, config_file: Path | None = None,
                thresholds: list[str] = (), severities: list[str] = ()) -> AuditConfig:
    """Build the effective config from pyproject.toml, auditq.toml (or `config_file`) and flags."""
    config = AuditConfig()
    pyproject = directory / "pyproject.toml"
    if present(pyproject):
        table = _tool_table(_read_toml(pyproject), str(pyproject))
        if table:
            config = _apply_table(config, table, str(pyproject))
    toml_path = config_file if config_file is not None else directory / "auditq.toml"
    if config_file is not None and Path(config_file).is_dir():
        raise InputError(f"--config {config_file} is a directory; expected an auditq.toml file")
    if config_file is not None and not present(config_file, "--config"):  # a FIFO, a loop: named
        raise InputError(f"--config {config_file} does not exist")
    if present(toml_path):
        data = _read_toml(toml_path)
        config = _apply_table(config, _tool_table(data, str(toml_path), default=data), str(toml_path))
    checks = dict(config.checks)
    for flag, is_threshold in [(t, True) for t in thresholds] + [(s, False) for s in severities]:
        name, sep, value = flag.partition("=")
        kind = "--threshold" if is_threshold else "--severity"
        if not sep or name not in checks:
            raise InputError(f"{kind} {flag!r}: expected CHECK=VALUE with CHECK in {', '.join(checks)}")
        if is_threshold:
            try:
                number = float(value)
            except ValueError:
                raise InputError(f"{kind} {flag!r}: {value!r} is not a number") from None
            checks[name] = _updated(checks[name], number, None, kind)
        else:
            checks[name] = _updated(checks[name], None, value, kind)
    if thresholds or severities:
        config = replace(config, checks=checks, sources=config.sources + ("flags",))
    return config
