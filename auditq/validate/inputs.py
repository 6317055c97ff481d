"""The validation stage of `auditq check` (and `demo`): every input checked before any heavy import
(torch, transformers) or weight load, so a bad input is refused in well under 2 s with exit 2 and one
line naming the file, field or flag, the value and what is expected.

Checked here, in order: flags (probes, formats with every family's options, probe settings, --fail-on, --format,
--verify-cache), auditq.toml / pyproject.toml / waivers, the result cache dir, every checkpoint
(config.json types, tokenizer.json, safetensors headers against config.json's shapes, architecture
agreement with BASE, the same tensor names, shapes and dtype kinds as BASE: auditq.checkpoint.tensor_match), the suite (types, placeholders, unique ids, lengths against prefix_tokens and the
model's context), --calibration, --artifact headers, and --out (auditq.report.outdir: writable, fresh, no
overlap with any input). What needs the model classes (tensor names against the architecture) follows
right after the heavy imports, still before any weights are read (auditq.checkpoint.integrity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from auditq.errors import InputError
from auditq.suite.settings import check_mink_k, check_positive_int


@dataclass(frozen=True)
class CheckInputs:
    """Everything `auditq check` was asked to do, as given on the command line."""

    base: Path
    unlearned: Path
    suite: Optional[Path] = None
    retrain: Optional[Path] = None
    reference: Optional[Path] = None
    formats: tuple[str, ...] = ("fp", "rtn8", "rtn4")
    probes: tuple[str, ...] = ("verbmem", "knowmem", "mia", "utility")
    out: Optional[str] = None
    force: bool = False
    config_file: Optional[Path] = None
    thresholds: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    fail_on: Optional[str] = None
    allow_inconclusive: bool = False
    report_formats: tuple[str, ...] = ()
    waivers_file: Optional[Path] = None
    artifacts: tuple[Path, ...] = ()
    base_artifacts: tuple[Path, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    use_cache: bool = True
    verify_cache: int = 0
    #: `remediate` re-checks a staged checkpoint and writes its reports inside it
    out_inside: Optional[Path] = None


@dataclass(frozen=True)
class Validated:
    config: Any
    waivers: tuple[Any, ...]
    fail_on: str
    writers: tuple[str, ...]
    out: Optional[Path]
    suite_dir: Path


FLAG_NAMES = {"prefix_tokens": "--prefix-tokens", "max_new_tokens": "--max-new-tokens",
              "answer_tokens": "--answer-tokens", "mink_k": "--mink-k"}


def _check_flags(inputs: CheckInputs) -> None:
    from auditq.formats import parse_format
    from auditq.probes import PROBES

    if not inputs.probes:
        raise InputError(f"--probes {','.join(inputs.probes) or repr('')}: no probe named "
                         f"(expected a comma-separated list of {', '.join(PROBES.names())})")
    unknown = [p for p in inputs.probes if p not in PROBES]
    if unknown:
        raise InputError(f"--probes: unknown probe(s) {', '.join(unknown)} (known: {', '.join(PROBES.names())})")
    twice = sorted({p for p in inputs.probes if inputs.probes.count(p) > 1})
    if twice:
        raise InputError(f"--probes: {', '.join(twice)} listed twice")
    if not inputs.formats:
        raise InputError("--formats: no format named (expected e.g. fp,rtn8,rtn4)")
    # every family's option parser is torch-free (auditq.formats.options); the names as make_formats sees them
    names = [parse_format(raw, f"--formats {raw.strip()}").spec.raw for raw in inputs.formats]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"--formats: {', '.join(twice)} listed twice")
    for key, flag in FLAG_NAMES.items():
        value = inputs.settings.get(key)
        if value is None:
            continue
        if key == "mink_k":
            check_mink_k(value, flag)
        else:
            check_positive_int(value, flag)
    if inputs.verify_cache < 0:
        raise InputError(f"--verify-cache {inputs.verify_cache}: expected a number of cached rows >= 0")
    if inputs.verify_cache and not inputs.use_cache:
        raise InputError("--verify-cache re-measures cached rows; it contradicts --no-cache")
    if len(inputs.base_artifacts) > len(inputs.artifacts):
        raise InputError("--base-artifact given without a matching --artifact")


def _check_cache_dir(use_cache: bool) -> None:
    if not use_cache:
        return
    from auditq.cache.store import cache_root

    root = cache_root()
    for path in (root, root / "results"):
        if path.exists() and not path.is_dir():
            source = "AUDITQ_CACHE_DIR" if os.environ.get("AUDITQ_CACHE_DIR") else "the result cache"
            raise InputError(f"{source} {path} is not a directory (point AUDITQ_CACHE_DIR at a directory, "
                             "or pass --no-cache)")


def _check_file(path: Optional[Path], flag: str) -> None:
    if path is None:
        return
    if Path(path).is_dir():
        raise InputError(f"{flag} {path} is a directory; expected a file")


def _check_calibration(calibration: Optional[str]) -> Optional[Path]:
    if calibration is None or calibration == "forget":
        return None
    path = Path(calibration)
    if not path.is_file():
        raise InputError(f"--calibration {calibration}: no such file (expected a text file, one sample a line, or 'forget')")
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--calibration {calibration}: cannot read as UTF-8 text ({type(exc).__name__})") from None
    if not lines:
        raise InputError(f"--calibration {calibration}: no non-empty lines")
    return path


def _check_artifact(path: Path, flag: str) -> None:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{flag} {path} does not exist")
    if path.is_dir():
        from auditq.checkpoint.directory import read_config
        from auditq.checkpoint.safetensors_header import read_checkpoint_headers

        config = read_config(path, f"{flag}")
        if not isinstance(config.get("quantization_config"), dict):
            raise InputError(f"{flag} {path}/config.json has no quantization_config table (expected a GPTQ/AWQ checkpoint)")
        read_checkpoint_headers(path)
    elif str(path).endswith(".gguf"):
        from auditq.checkpoint.gguf_header import read_gguf_header

        read_gguf_header(path)
    else:
        raise InputError(f"{flag} {path}: unsupported artifact (expected a .gguf file or a GPTQ/AWQ checkpoint dir)")


def validate_check(inputs: CheckInputs, cwd: Path | None = None) -> Validated:
    """Run the whole light validation stage; InputError (exit 2, one line) on the first problem."""
    from auditq.checkpoint.directory import check_compatible_configs, validate_checkpoint
    from auditq.checkpoint.tensor_match import compare_tensors
    from auditq.report.compliance import check_writers, resolve_fail_on
    from auditq.report.outdir import check_out_dir
    from auditq.suite.records import bundled_suite_dir, load_suite
    from auditq.suite.validate import check_suite_lengths
    from auditq.verdict.config import load_config
    from auditq.verdict.waivers import load_waivers

    cwd = cwd or Path.cwd()
    _check_flags(inputs)
    fail_on = resolve_fail_on(inputs.fail_on, inputs.allow_inconclusive)
    _check_file(inputs.waivers_file, "--waivers")
    config = load_config(cwd, inputs.config_file, list(inputs.thresholds), list(inputs.severities))
    waivers = load_waivers(cwd, inputs.waivers_file, inputs.config_file)
    _check_cache_dir(inputs.use_cache)

    roles = {"base": inputs.base, "unlearned": inputs.unlearned, "retrain": inputs.retrain,
             "reference": inputs.reference}
    configs: dict[str, dict] = {}
    tokenizer = None
    for role, path in roles.items():
        if path is None:
            continue
        configs[role], role_tokenizer = validate_checkpoint(Path(path), role)
        tokenizer = tokenizer if tokenizer is not None else role_tokenizer
        if role != "base":
            check_compatible_configs(configs["base"], configs[role], role)
            compare_tensors(Path(inputs.base), Path(path), role, configs["base"])  # same tensors as BASE

    suite_dir = Path(inputs.suite) if inputs.suite is not None else bundled_suite_dir()
    suite = load_suite(suite_dir)
    check_suite_lengths(suite, inputs.settings, inputs.probes, tokenizer, configs["base"])
    calibration = _check_calibration(inputs.settings.get("calibration"))
    for path in inputs.artifacts:
        _check_artifact(path, "--artifact")
    for path in inputs.base_artifacts:
        _check_artifact(path, "--base-artifact")
    out = Path(inputs.out) if inputs.out else None
    writers = check_writers(inputs.report_formats, out)
    out_inputs = [*(p for p in roles.values() if p is not None), suite_dir, *inputs.artifacts, *inputs.base_artifacts,
                  inputs.config_file, inputs.waivers_file, calibration]
    out = check_out_dir(
        inputs.out, out_inputs, force=inputs.force, allowed_inside=inputs.out_inside)
    return Validated(config=config, waivers=waivers, fail_on=fail_on, writers=writers, out=out, suite_dir=suite_dir)
