"""The sweep's command line as one SweepOptions, and its light-stage checks (torch-free, before any work).

Candidates come as paths (labelled by their directory name) and/or a manifest (TOML, `[[candidate]]` tables
with `label` and `path`, paths relative to the manifest). Labels become directory names under --out, so they
are restricted to letters, digits, `.`, `_` and `-`, and must be unique.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from auditq.audit.request import DEFAULT_FORMATS, DEFAULT_PROBES, CheckOptions
from auditq.checkpoint.placement_flags import ComputeRequest
from auditq.errors import InputError

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
REQUIRE = ("any", "all")


@dataclass(frozen=True)
class SweepOptions:
    """`auditq sweep` as typed: BASE, the labelled candidates, and the options every candidate's audit shares."""

    base: Path
    candidates: tuple[tuple[str, Path], ...]
    out: str
    retrain: Optional[Path] = None
    suite: Optional[Path] = None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    probes: tuple[str, ...] = DEFAULT_PROBES
    require: str = "any"
    force: bool = False
    config_file: Optional[Path] = None
    thresholds: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    allow_inconclusive: bool = False
    seed: int = 0
    batch_size: int = 64
    max_batch_tokens: Optional[int] = 4096
    threads: Optional[int] = None
    compute: ComputeRequest = field(default_factory=ComputeRequest)
    trust_remote_code: bool = False
    executor: str = "local"
    ray_address: Optional[str] = None
    ray_timeout: float = 6 * 3600.0
    quiet: bool = False

    def check_options(self, label: str, path: Path) -> CheckOptions:
        """One candidate's audit: `auditq check BASE CANDIDATE` with the sweep's shared options, no --out (the
        sweep writes every report itself) and the result cache on (it is what measures BASE only once)."""
        return CheckOptions(
            base=self.base, unlearned=path, retrain=self.retrain, suite=self.suite, formats=self.formats,
            probes=self.probes, config_file=self.config_file, thresholds=self.thresholds, severities=self.severities,
            allow_inconclusive=self.allow_inconclusive, seed=self.seed, batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens, threads=self.threads, compute=self.compute,
            trust_remote_code=self.trust_remote_code, executor=self.executor, ray_address=self.ray_address,
            ray_timeout=self.ray_timeout, quiet=self.quiet, use_cache=True)


def gather_candidates(paths: tuple[Path, ...], manifest: Optional[Path]) -> tuple[tuple[str, Path], ...]:
    """(label, path) for every candidate: the manifest's first, then the paths given (labelled by dir name)."""
    found: list[tuple[str, Path]] = list(read_manifest(manifest)) if manifest is not None else []
    found += [(Path(p).name, Path(p)) for p in paths]
    if not found:
        raise InputError("no candidate given (expected CANDIDATE dirs and/or --manifest FILE)")
    seen: set[str] = set()
    for label, _ in found:
        if not LABEL.match(label):
            raise InputError(f"candidate label {label!r}: use letters, digits, '.', '_' and '-' (it names a "
                             "directory under --out)")
        if label in seen:
            raise InputError(f"candidate label {label!r} given twice (label them in a --manifest)")
        seen.add(label)
    return tuple(found)


def read_manifest(manifest: Path) -> list[tuple[str, Path]]:
    """`[[candidate]]` tables with `label` and `path` (relative to the manifest's directory)."""
    import tomllib

    try:
        data = tomllib.loads(Path(manifest).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"--manifest {manifest}: cannot read as TOML ({type(exc).__name__})") from None
    entries = data.get("candidate")
    if not isinstance(entries, list) or not entries or set(data) - {"candidate"}:
        raise InputError(f"--manifest {manifest}: expected only [[candidate]] tables with label and path")
    out = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"label", "path"} or \
                not all(isinstance(entry[k], str) for k in ("label", "path")):
            raise InputError(f"--manifest {manifest}: candidate {index + 1} needs exactly label and path (strings)")
        path = Path(entry["path"])
        out.append((entry["label"], path if path.is_absolute() else Path(manifest).parent / path))
    return out


@dataclass(frozen=True)
class ValidatedSweep:
    """The light stage's result: each candidate's validated check, and the sweep's --out."""

    checks: tuple[tuple[str, CheckOptions, Any], ...]
    out: Path


def validate_sweep(options: SweepOptions) -> ValidatedSweep:
    """Every candidate's audit inputs (auditq.validate.inputs), --require, and --out; InputError on the first."""
    from auditq.report.outdir import check_out_dir
    from auditq.validate.inputs import validate_check

    if options.require not in REQUIRE:
        raise InputError(f"--require {options.require}: expected any or all")
    checks = []
    for label, path in options.candidates:
        check = options.check_options(label, path)
        checks.append((label, check, validate_check(check)))
    inputs = [options.base, options.retrain, options.suite, options.config_file,
              *[path for _, path in options.candidates]]
    out = check_out_dir(options.out, inputs, force=options.force)
    return ValidatedSweep(checks=tuple(checks), out=out)

