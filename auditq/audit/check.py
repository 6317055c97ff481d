"""The audit core as `auditq check`, `demo` and `remediate`'s re-check run it: from a validated CheckOptions and
the light stage's ready objects to an AuditOutcome (printing and report files: auditq.report.publish).

The light stage (auditq.validate.inputs) has checked every input; what needs the model classes (tensor names
against the architecture, transformers) is checked here, right after the heavy imports and before any weights
are read.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Optional

from auditq.audit.request import AuditRequest, CheckOptions, built_formats
from auditq.errors import InputError


def prepare_request(options: CheckOptions, *, suite: Any, parsed_formats: Iterable[Any], config: Any,
                    waivers: tuple[Any, ...], fail_on: str,
                    calibration_lines: Optional[tuple[str, ...]]) -> AuditRequest:
    """The ready AuditRequest: formats built from the parsed specs, --artifact rows, the result cache."""
    from auditq.checkpoint.integrity import check_tensor_names

    for role, path in options.models().items():  # before any weights load: transformers would random-initialise
        check_tensor_names(path, role, options.trust_remote_code)
    return AuditRequest(options=options, suite=suite,
                        formats=tuple(built_formats(parsed_formats, options.seeds, options.seed)),
                        artifact_formats=(*artifact_formats(options.artifacts, options.base_artifacts),
                                          *served_formats(options)),
                        config=config, fail_on=fail_on, waivers=tuple(waivers), calibration_lines=calibration_lines,
                        cache=_cache(options.use_cache))


def run_check_audit(request: AuditRequest, events: Any = None, console: Any = None):
    """run_audit, then --verify-cache (re-measure N cached rows; `console` shows its progress)."""
    from auditq.audit.pipeline import run_audit

    outcome = run_audit(request, events)
    verify = request.options.verify_cache
    if verify and request.cache is not None:
        from auditq.cache.verify import verify_cached_rows

        verified = verify_cached_rows(request.cache, verify, request.options.seed, console)
        outcome = replace(outcome, report=replace(outcome.report, cache={**outcome.report.cache, "verified": verified}))
    return outcome


def artifact_formats(artifacts: Iterable[Path], base_artifacts: Iterable[Path] = ()) -> list:
    """One extra row per --artifact file; a --base-artifact of the same kind is paired in order (the light stage
    refused a --base-artifact without its --artifact)."""
    artifacts, base_by_index = list(artifacts), list(base_artifacts)
    formats = []
    for index, path in enumerate(artifacts):
        base = base_by_index[index] if index < len(base_by_index) else None
        role_paths = {"base": Path(base)} if base else None
        if Path(path).is_dir():  # a GPTQ or AWQ checkpoint directory
            from auditq.formats.gptq import QuantizedArtifact

            formats.append(QuantizedArtifact.from_path(Path(path), role_paths=role_paths))
        elif str(path).endswith(".gguf"):
            from auditq.formats.gguf import GGUFArtifact

            formats.append(GGUFArtifact.from_path(Path(path), role_paths=role_paths))
        else:
            raise InputError(f"--artifact {path}: unsupported artifact (expected a .gguf file or a GPTQ/AWQ checkpoint dir)")
    return formats


def served_formats(options: CheckOptions) -> list:
    """The --served row (auditq.formats.served): UNLEARNED (and BASE with --served-base) through their endpoints."""
    if not options.served:
        return []
    from auditq.backends.http_client import HttpSettings
    from auditq.formats.served import ServedFormat

    urls = {"unlearned": options.served, **({"base": options.served_base} if options.served_base else {})}
    models = {"unlearned": options.served_model, "base": options.served_base_model}
    return [ServedFormat(urls, models=models, stand_in=options.served_as,
                         settings=HttpSettings(timeout_s=options.served_timeout, concurrency=options.concurrency))]


def _cache(use_cache: bool):
    from auditq.cache.store import ResultCache

    return ResultCache() if use_cache else None
