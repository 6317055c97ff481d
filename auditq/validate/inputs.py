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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from auditq.audit.request import PROBE_FLAGS, CheckOptions, read_calibration
from auditq.errors import InputError
from auditq.suite.settings import check_mink_k, check_positive_int


@dataclass(frozen=True)
class Validated:
    """What the light stage made of a CheckOptions, handed to the audit core as ready objects."""

    config: Any
    waivers: tuple[Any, ...]
    #: the gate policy (--fail-on, with --allow-inconclusive as an alias of --fail-on fail)
    fail_on: str
    writers: tuple[str, ...]
    out: Optional[Path]
    suite_dir: Path
    #: the loaded suite (auditq.suite.records.Suite)
    suite: Any
    #: --formats parsed by every family's torch-free option parser (auditq.formats.ParsedFormat)
    parsed_formats: tuple[Any, ...]
    #: the --calibration file's lines (None for the default and 'forget')
    calibration_lines: Optional[tuple[str, ...]]


def _check_flags(options: CheckOptions) -> tuple[Any, ...]:
    """Probes, formats (parsed: returned), probe settings, --verify-cache, --base-artifact pairing."""
    from auditq.formats import parse_format
    from auditq.probes import PROBES

    if not options.probes:
        raise InputError(f"--probes {','.join(options.probes) or repr('')}: no probe named "
                         f"(expected a comma-separated list of {', '.join(PROBES.names())})")
    unknown = [p for p in options.probes if p not in PROBES]
    if unknown:
        raise InputError(f"--probes: unknown probe(s) {', '.join(unknown)} (known: {', '.join(PROBES.names())})")
    twice = sorted({p for p in options.probes if options.probes.count(p) > 1})
    if twice:
        raise InputError(f"--probes: {', '.join(twice)} listed twice")
    if not options.formats:
        raise InputError("--formats: no format named (expected e.g. fp,rtn8,rtn4)")
    # every family's option parser is torch-free (auditq.formats.options); the names as the core builds them
    parsed = tuple(parse_format(raw, f"--formats {raw.strip()}") for raw in options.formats)
    names = [p.spec.raw for p in parsed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"--formats: {', '.join(twice)} listed twice")
    for key, value in options.probe_overrides().items():
        if value is None:
            continue
        if key == "mink_k":
            check_mink_k(value, PROBE_FLAGS[key])
        else:
            check_positive_int(value, PROBE_FLAGS[key])
    if options.verify_cache < 0:
        raise InputError(f"--verify-cache {options.verify_cache}: expected a number of cached rows >= 0")
    if options.verify_cache and not options.use_cache:
        raise InputError("--verify-cache re-measures cached rows; it contradicts --no-cache")
    if len(options.base_artifacts) > len(options.artifacts):
        raise InputError("--base-artifact given without a matching --artifact")
    return parsed


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


def validate_check(options: CheckOptions, cwd: Path | None = None) -> Validated:
    """Run the whole light validation stage; InputError (exit 2, one line) on the first problem."""
    from auditq.report.compliance import check_writers, resolve_fail_on
    from auditq.report.outdir import check_out_dir
    from auditq.verdict.config import load_config
    from auditq.verdict.waivers import load_waivers

    cwd = cwd or Path.cwd()
    parsed = _check_flags(options)
    from auditq.validate.executor import check_executor  # --executor, --ray-address: a flag, checked as one

    check_executor(getattr(options, "executor", "local"), getattr(options, "ray_address", None))
    fail_on = resolve_fail_on(options.fail_on, options.allow_inconclusive)
    _check_file(options.waivers_file, "--waivers")
    config = load_config(cwd, options.config_file, list(options.thresholds), list(options.severities))
    waivers = load_waivers(cwd, options.waivers_file, options.config_file)
    _check_cache_dir(options.use_cache)
    suite_dir, suite = _check_models_and_suite(options)
    calibration = read_calibration(options.calibration)
    for path in options.artifacts:
        _check_artifact(path, "--artifact")
    for path in options.base_artifacts:
        _check_artifact(path, "--base-artifact")
    out = Path(options.out) if options.out else None
    writers = check_writers(options.report_formats, out)
    calibration_file = Path(options.calibration) if calibration is not None else None
    out_inputs = [*options.models().values(), suite_dir, *options.artifacts, *options.base_artifacts,
                  options.config_file, options.waivers_file, calibration_file]
    out = check_out_dir(options.out, out_inputs, force=options.force, allowed_inside=options.out_inside)
    return Validated(config=config, waivers=waivers, fail_on=fail_on, writers=writers, out=out, suite_dir=suite_dir,
                     suite=suite, parsed_formats=parsed, calibration_lines=calibration)


def _check_models_and_suite(options: CheckOptions) -> tuple[Path, Any]:
    """Every checkpoint (files, config.json, tokenizer, headers; the same tensors as BASE), then the suite
    against the probe settings and the tokenizer: (suite dir, loaded suite)."""
    from auditq.checkpoint.directory import check_compatible_configs, validate_checkpoint
    from auditq.checkpoint.tensor_match import compare_tensors
    from auditq.suite.records import bundled_suite_dir, load_suite
    from auditq.suite.validate import check_suite_lengths

    configs: dict[str, dict] = {}
    tokenizer = None
    for role, path in options.models().items():
        configs[role], role_tokenizer = validate_checkpoint(path, role)
        tokenizer = tokenizer if tokenizer is not None else role_tokenizer
        if role != "base":
            check_compatible_configs(configs["base"], configs[role], role)
            compare_tensors(Path(options.base), path, role, configs["base"])  # same tensors as BASE
    suite_dir = Path(options.suite) if options.suite is not None else bundled_suite_dir()
    suite = load_suite(suite_dir)
    check_suite_lengths(suite, options.probe_overrides(), options.probes, tokenizer, configs["base"])
    return suite_dir, suite
