"""The validation stage of `auditq check` (and `demo`): every input checked before any heavy import
(torch, transformers) or weight load, so a bad input is refused in well under 2 s with exit 2 and one
line naming the file, field or flag, the value and what is expected.

Checked here, in order: flags (probes, formats with every family's options, probe settings, --fail-on, --format,
--verify-cache), auditq.toml / pyproject.toml / waivers, the result cache dir, every checkpoint
(config.json types, tokenizer.json, safetensors headers against config.json's shapes, architecture
agreement with BASE, the same tensor names, shapes and dtype kinds as BASE: auditq.checkpoint.tensor_match), the suite (types, placeholders, unique ids, lengths against prefix_tokens and the
model's context), --calibration (and whether a format that calibrates gets any text), --artifact headers
(GGUF: known ggml types, BASE's dimensions), --device cuda (torch-free), AUDITQ_TODAY, and --out (auditq.report.outdir: writable, fresh, no
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
from auditq.limits import check_context, check_numbers
from auditq.regular_file import present, require_regular
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

    # every number against its range (auditq.limits.LIMITS) before anything else: NaN, inf, huge, negative
    check_numbers({"threads": options.threads, "seed": options.seed, "batch_size": options.batch_size,
                   "max_batch_tokens": options.max_batch_tokens, "verify_cache": options.verify_cache,
                   "seeds": options.seeds, "privleak_reference_auc": options.privleak_reference_auc,
                   "served_timeout": options.served_timeout, "concurrency": options.concurrency,
                   "ray_timeout": options.ray_timeout, **options.probe_overrides()})
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
    if options.verify_cache and not options.use_cache:
        raise InputError("--verify-cache re-measures cached rows; it contradicts --no-cache")
    if len(options.base_artifacts) > len(options.artifacts):
        raise InputError("--base-artifact given without a matching --artifact")
    _check_relearn_needs(parsed, options)
    return parsed


def _check_relearn_needs(parsed: tuple[Any, ...], options: CheckOptions) -> None:
    """relearn:uds trains on the very forget records it scores: any model recovers them, so only the retrain
    model under the same fine-tune (UDS's R) tells what the unlearned one recovered. Without --retrain the
    row could only FAIL, which would be a wrong FAIL: refuse it."""
    for fmt in parsed:
        for part in (fmt.parts or (fmt,)):
            if getattr(part.options, "source", None) == "forget_all" and options.retrain is None:
                raise InputError(f"--formats {fmt.spec.raw}: relearn:uds relearns and scores the same forget records; "
                                 "it needs --retrain (the retrain model's own recovery is the bar)")


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


def _check_cache_key(use_cache: bool) -> None:
    """A weak or unreadable signing key (auditq.cache.key) refused here, before any other output (the memory
    line) is printed; nothing is created: a missing key file is made later, when the cache is opened."""
    if not use_cache:
        return
    from auditq.cache.key import key_file, signing_key
    from auditq.cache.store import results_dir

    path = key_file()
    if os.environ.get("AUDITQ_CACHE_KEY") or path.exists() or path.is_symlink():
        signing_key(results_dir())


def _check_file(path: Optional[Path], flag: str) -> None:
    if path is None:
        return
    if Path(path).is_dir():
        raise InputError(f"{flag} {path} is a directory; expected a file")
    present(path, flag)  # a FIFO, a socket, a device, a loop, a dangling link: named, never opened


def _check_artifact(path: Path, flag: str, base: Path) -> None:
    path = Path(path)
    if not os.path.lexists(path):
        raise InputError(f"{flag} {path} does not exist")
    if not path.is_dir():
        require_regular(path, flag)  # a FIFO .gguf, a symlink loop, a device: named, never opened
    if path.is_dir():
        from auditq.checkpoint.directory import read_config
        from auditq.checkpoint.safetensors_header import read_checkpoint_headers

        config = read_config(path, f"{flag}")
        if not isinstance(config.get("quantization_config"), dict):
            raise InputError(f"{flag} {path}/config.json has no quantization_config table (expected a GPTQ/AWQ checkpoint)")
        read_checkpoint_headers(path)
    elif str(path).endswith(".gguf"):
        from auditq.checkpoint.directory import read_config
        from auditq.checkpoint.gguf_header import check_gguf_matches, read_gguf_header

        check_gguf_matches(read_gguf_header(path), read_config(Path(base), "base"), path, flag)  # header only
    else:
        raise InputError(f"{flag} {path}: unsupported artifact (expected a .gguf file or a GPTQ/AWQ checkpoint dir)")


def _with_reference_auc(config: Any, options: CheckOptions) -> Any:
    """--privleak-reference-auc into the config: a number in (0, 1), and never beside --retrain (whose
    measured AUC is the reference: two references for one number would leave the report ambiguous)."""
    from dataclasses import replace

    if options.privleak_reference_auc is None:
        return config
    value = float(options.privleak_reference_auc)  # its range: auditq.limits, checked with the other flags
    if options.retrain is not None:
        raise InputError("--privleak-reference-auc replaces the retrain model's AUC; "
                         "with --retrain its measured AUC is the reference (give one, not both)")
    return replace(config, privleak_reference_auc=value)


def _check_url(url: str, flag: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InputError(f"{flag}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{flag}: expected an http(s)://host[:port] URL of an OpenAI-compatible server")
    if parts.username or parts.password:
        raise InputError(f"{flag}: the URL holds credentials; put the API key in AUDITQ_API_KEY or OPENAI_API_KEY")
    if parts.query or parts.fragment:
        raise InputError(f"{flag}: the URL has a query or fragment; give the server's base URL")


def check_served(options: CheckOptions) -> None:
    """--served and friends: syntax, then a health check of each endpoint (reachable, OpenAI-shaped, the model
    listed) before any weights are read; an unusable endpoint exits 2 with one line."""
    if not options.served:
        if options.served_base or options.served_model or options.served_base_model:
            raise InputError("--served-base/--served-model given without --served URL")
        return
    from auditq.backends.http_client import EndpointError, HttpClient, HttpSettings, api_key_from_env
    from auditq.backends.served_api import discover
    from auditq.formats import parse_format
    from auditq.formats.served import display_url

    # --served-timeout and --concurrency: their ranges are auditq.limits', checked with the other flags
    parse_format(options.served_as, f"--served-as {options.served_as}")
    settings = HttpSettings(timeout_s=options.served_timeout, retries=1, concurrency=1)
    for flag, url, model in (("--served", options.served, options.served_model),
                             ("--served-base", options.served_base, options.served_base_model)):
        if not url:
            continue
        _check_url(url, flag)
        try:
            discover(HttpClient(url, settings, api_key_from_env()), model)
        except EndpointError as exc:
            raise InputError(f"{flag} {display_url(url)}: {exc}") from None


def validate_check(options: CheckOptions, cwd: Path | None = None) -> Validated:
    """Run the whole light validation stage; InputError (exit 2, one line) on the first problem."""
    from auditq.report.compliance import check_writers, resolve_fail_on
    from auditq.report.outdir import check_out_dir
    from auditq.verdict.config import load_config
    from auditq.verdict.waivers import load_waivers

    from auditq.checkpoint.placement_flags import check_device_available
    from auditq.validate.calibration import check_calibration_text
    from auditq.verdict.waivers import today_utc

    cwd = cwd or Path.cwd()
    parsed = _check_flags(options)
    check_device_available(options.compute.device)  # torch-free: no 15 s of imports to learn there is no CUDA
    today_utc()  # AUDITQ_TODAY parsed now, not after the measuring
    from auditq.validate.executor import check_executor  # --executor, --ray-address: a flag, checked as one

    check_executor(getattr(options, "executor", "local"), getattr(options, "ray_address", None))
    fail_on = resolve_fail_on(options.fail_on, options.allow_inconclusive)
    _check_file(options.waivers_file, "--waivers")
    _check_file(options.config_file, "--config")
    config = _with_reference_auc(load_config(cwd, options.config_file, list(options.thresholds),
                                             list(options.severities)), options)
    waivers = load_waivers(cwd, options.waivers_file, options.config_file)
    _check_cache_dir(options.use_cache)
    _check_cache_key(options.use_cache)
    suite_dir, suite = _check_models_and_suite(options)
    calibration = read_calibration(options.calibration)
    check_calibration_text(parsed, options.calibration, calibration, suite)
    for path in options.artifacts:
        _check_artifact(path, "--artifact", options.base)
    for path in options.base_artifacts:
        _check_artifact(path, "--base-artifact", options.base)
    check_served(options)
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
    from auditq.checkpoint.directory import check_compatible_configs, check_same_tokenizer, validate_checkpoint
    from auditq.checkpoint.tensor_match import compare_tensors
    from auditq.suite.records import load_suite, resolve_suite
    from auditq.suite.validate import check_suite_lengths

    configs: dict[str, dict] = {}
    tokenizer = None
    for role, path in options.models().items():
        configs[role], role_tokenizer = validate_checkpoint(path, role)
        if role != "base":
            check_same_tokenizer(tokenizer, role_tokenizer, role)
        tokenizer = tokenizer if tokenizer is not None else role_tokenizer
        if role != "base":
            check_compatible_configs(configs["base"], configs[role], role)
            compare_tensors(Path(options.base), path, role, configs["base"])  # same tensors as BASE
    suite_dir = resolve_suite(options.suite)
    suite = load_suite(suite_dir)
    _check_context(options, suite, configs["base"])  # the budgets alone first: the plainest message
    check_suite_lengths(suite, options.probe_overrides(), options.probes, tokenizer, configs["base"])
    return suite_dir, suite


def _check_context(options: CheckOptions, suite: Any, config: dict) -> None:
    """The effective prefix/continuation/answer lengths (flag, else the suite's, else the default) against
    the model's context from config.json, before any weights load (auditq.limits.check_context)."""
    flags = options.probe_overrides()

    def effective(key: str) -> int:
        return flags[key] if flags.get(key) is not None else getattr(suite.settings, key)

    source = "max_position_embeddings" if config.get("max_position_embeddings") else "n_positions"
    check_context(effective("prefix_tokens"), effective("max_new_tokens"), effective("answer_tokens"),
                  config.get(source), f"{options.base}/config.json {source}")
