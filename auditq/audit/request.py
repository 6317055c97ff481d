"""What an audit is asked to do: `CheckOptions` (the command line, typed, built once) and `AuditRequest` (the
options plus the ready objects the audit core consumes: the loaded suite, the built formats, config, waivers,
the gate policy, the calibration texts and the result cache).

Torch-free: the light validation stage (auditq.validate.inputs) checks a `CheckOptions` before any heavy import,
and the audit core (auditq.audit.pipeline) does not check again what it checked. `audit_request` builds a request
for library callers and tests without the light stage (they vouch for their own inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from auditq.checkpoint.placement_flags import ComputeRequest
from auditq.errors import InputError
from auditq.verdict.config import AuditConfig

if TYPE_CHECKING:
    from auditq.formats.base import Format
    from auditq.probes import ProbeSettings
    from auditq.suite.records import Suite

DEFAULT_FORMATS = ("fp", "rtn8", "rtn4")
DEFAULT_PROBES = ("verbmem", "knowmem", "mia", "utility")
#: roles in the order they are checked, loaded and reported (reference last: it is only scored at fp)
ROLES = ("base", "unlearned", "retrain")
#: --prefix-tokens & co.: the probe settings a command line may override (None: the suite's, else the default)
PROBE_FLAGS = {"prefix_tokens": "--prefix-tokens", "max_new_tokens": "--max-new-tokens",
               "answer_tokens": "--answer-tokens", "mink_k": "--mink-k"}


@dataclass(frozen=True)
class CheckOptions:
    """`auditq check` as given on the command line (`demo` and `remediate`'s re-check build theirs the same way).

    Built once by the CLI, validated once by the light stage, handed down unchanged. Library defaults: no
    --max-batch-tokens cap (the CLI's default is 4096), 64 rows per batch.
    """

    base: Path
    unlearned: Path
    retrain: Optional[Path] = None
    reference: Optional[Path] = None
    #: probe suite dir (None: the bundled demo suite)
    suite: Optional[Path] = None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    probes: tuple[str, ...] = DEFAULT_PROBES
    #: --artifact / --base-artifact files (paired in order)
    artifacts: tuple[Path, ...] = ()
    base_artifacts: tuple[Path, ...] = ()
    #: --out as typed (None: no report files)
    out: Optional[str] = None
    force: bool = False
    #: `remediate` re-checks a staged checkpoint and writes its reports inside it
    out_inside: Optional[Path] = None
    report_formats: tuple[str, ...] = ()
    config_file: Optional[Path] = None
    thresholds: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    allow_inconclusive: bool = False
    fail_on: Optional[str] = None
    waivers_file: Optional[Path] = None
    use_cache: bool = True
    verify_cache: int = 0
    seed: int = 0
    batch_size: int = 64
    #: padded tokens per forward pass (rows × width); None: `batch_size` rows whatever their length
    max_batch_tokens: Optional[int] = None
    #: torch CPU threads (None: min(4, cores), or what the caller already set)
    threads: Optional[int] = None
    #: --device / --dtype / --device-map (auditq.checkpoint.placement resolves them before any weights are read)
    compute: ComputeRequest = field(default_factory=ComputeRequest)
    trust_remote_code: bool = False
    prefix_tokens: Optional[int] = None
    max_new_tokens: Optional[int] = None
    answer_tokens: Optional[int] = None
    mink_k: Optional[float] = None
    #: GPTQ/AWQ calibration: None (the suite's generic text), "forget" (stress option) or a text file
    calibration: Optional[str] = None
    #: probe protocol: "auditq" (default) or "muse" (VerbMem/KnowMem as MUSE builds them, auditq.probes.muse)
    protocol: str = "auditq"
    quiet: bool = False
    #: --seeds: every stochastic format (relearn, GPTQ/AWQ) is measured under seeds seed .. seed+seeds-1
    seeds: int = 1
    #: --privleak-reference-auc: PrivLeak's AUC_ref without --retrain (None: 0.5; auditq.verdict.config)
    privleak_reference_auc: Optional[float] = None
    #: --served URL / --served-base URL: endpoints standing for UNLEARNED / BASE as served (auditq.formats.served)
    served: Optional[str] = None
    served_base: Optional[str] = None
    #: --served-model / --served-base-model: the model ids to audit (None: the only one the server lists)
    served_model: Optional[str] = None
    served_base_model: Optional[str] = None
    #: --served-as: the in-process format BASE is measured in when it has no endpoint
    served_as: str = "fp"
    #: --served-timeout seconds per request, --concurrency requests in flight
    served_timeout: float = 60.0
    concurrency: int = 4
    #: who runs the jobs: "local" (this process) or "ray" (auditq.audit.executors)
    executor: str = "local"
    #: --ray-address: "auto", "ray://host:port", "host:port" or "local" (start one here); None: local
    ray_address: Optional[str] = None
    #: Ray tasks still running after this many seconds are cancelled; their rows are UNKNOWN
    ray_timeout: float = 6 * 3600.0

    def models(self) -> dict[str, Path]:
        """The checkpoint dirs given, by role (base, unlearned, retrain, reference)."""
        given = {"base": self.base, "unlearned": self.unlearned, "retrain": self.retrain, "reference": self.reference}
        return {role: Path(path) for role, path in given.items() if path is not None}

    def probe_overrides(self) -> dict[str, Any]:
        """--prefix-tokens, --max-new-tokens, --answer-tokens, --mink-k (None where not given)."""
        return {key: getattr(self, key) for key in PROBE_FLAGS}


@dataclass(frozen=True)
class AuditRequest:
    """Everything the audit core needs, ready: nothing here is re-checked by auditq.audit.pipeline."""

    options: CheckOptions
    suite: "Suite"
    #: --formats as built Format objects ("fp" first when it was not named)
    formats: tuple["Format", ...]
    #: one row per --artifact (never cached: external files are not fingerprinted)
    artifact_formats: tuple["Format", ...] = ()
    config: AuditConfig = field(default_factory=AuditConfig)
    #: the gate policy: fail | inconclusive | never (auditq.report.compliance.resolve_fail_on)
    fail_on: str = "inconclusive"
    #: auditq.verdict.waivers.Waiver entries, judged on `today` (None: auditq.verdict.waivers.today_utc())
    waivers: tuple[Any, ...] = ()
    today: Optional[date] = None
    #: the lines of a --calibration file (read once, by whoever checked it); None when no file was given
    calibration_lines: Optional[tuple[str, ...]] = None
    #: auditq.cache.store.ResultCache, or None to measure everything
    cache: Any = None

    @property
    def all_formats(self) -> list["Format"]:
        return [*self.formats, *self.artifact_formats]

    def arguments(self) -> dict[str, Any]:
        """The request as plain JSON values (for report.json)."""
        o = self.options
        return {
            "base": str(o.base), "unlearned": str(o.unlearned), "suite": str(self.suite.path),
            "retrain": str(o.retrain) if o.retrain else None,
            "reference": str(o.reference) if o.reference else None,
            "formats": list(o.formats) + [f.name for f in self.artifact_formats], "probes": list(o.probes),
            "seed": o.seed, "batch_size": o.batch_size, "trust_remote_code": o.trust_remote_code,
            "allow_inconclusive": o.allow_inconclusive, "fail_on": self.fail_on,
            "prefix_tokens": o.prefix_tokens,
            "max_new_tokens": o.max_new_tokens, "answer_tokens": o.answer_tokens, "mink_k": o.mink_k,
            "calibration": o.calibration, "protocol": o.protocol,
            "device": o.compute.device, "dtype": o.compute.dtype, "device_map": o.compute.device_map,
            "max_batch_tokens": o.max_batch_tokens, "privleak_reference_auc": o.privleak_reference_auc,
            "seeds": o.seeds, **_served_arguments(o),
        }


def _served_arguments(o: CheckOptions) -> dict[str, Any]:
    """--served & co. for report.json (URLs without credentials; the API key is never an argument)."""
    if not o.served:
        return {}
    from auditq.formats.served import display_url

    return {"served": display_url(o.served), "served_base": display_url(o.served_base) if o.served_base else None,
            "served_model": o.served_model, "served_base_model": o.served_base_model, "served_as": o.served_as}


def read_calibration(calibration: Optional[str]) -> Optional[tuple[str, ...]]:
    """The non-empty lines of a --calibration file (None for the default and for 'forget'); InputError otherwise.

    The one place the file is checked and read: the light stage calls it, and hands the lines down.
    """
    if calibration is None or calibration == "forget":
        return None
    from auditq.regular_file import present, read_text

    path = Path(calibration)
    if not present(path, "--calibration"):  # a FIFO, a directory, a loop: named as what it is, never opened
        raise InputError(f"--calibration {calibration}: no such file (expected a text file, one sample a line, or 'forget')")
    try:
        from auditq.suite.records import lines as split_lines  # on "\n" only: U+2028 is text, not a line end

        lines = tuple(line for line in split_lines(read_text(path, "--calibration")) if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--calibration {calibration}: cannot read as UTF-8 text ({type(exc).__name__})") from None
    if not lines:
        raise InputError(f"--calibration {calibration}: no non-empty lines")
    return lines


def calibration_texts(request: AuditRequest) -> tuple[str, ...]:
    """Generic suite text by default (what deployers use); the forget set only when asked for."""
    calibration = request.options.calibration
    if calibration is None:
        return request.suite.calibration_texts()
    if calibration == "forget":
        return tuple(r.text for r in request.suite.forget.texts)
    if request.calibration_lines is None:  # a caller that built the request by hand without reading the file
        return read_calibration(calibration) or ()
    return request.calibration_lines


def probe_settings(suite: "Suite", protocol: str = "auditq", **overrides: Any) -> "ProbeSettings":
    """The probe settings: a command-line override (CheckOptions.probe_overrides(); None: not given), else the
    suite's (auditq.probes.muse for protocol "muse"). Overrides were checked by the light stage, the suite's own
    values when it was loaded (auditq.suite.settings)."""
    from auditq.probes import ProbeSettings
    from auditq.probes.muse import muse_defaults

    s = suite.settings
    pick = lambda key, default: default if overrides.get(key) is None else overrides[key]  # noqa: E731
    new_tokens, answer_tokens = muse_defaults(protocol, s.max_new_tokens, s.answer_tokens)
    return ProbeSettings(
        prefix_tokens=pick("prefix_tokens", s.prefix_tokens),
        max_new_tokens=pick("max_new_tokens", new_tokens),
        answer_tokens=pick("answer_tokens", answer_tokens),
        qa_template=s.qa_template,
        mink_k=pick("mink_k", s.mink_k),
        protocol=protocol,
    )


def built_formats(parsed: Iterable[Any], seeds: int = 1, seed: int = 0) -> list["Format"]:
    """Format objects from the light stage's parsed --formats (auditq.formats.parse_format), "fp" first when it
    was not named (the reference row every retention is read against); with `seeds` > 1 every stochastic
    format is followed by its repeats under the next seeds (auditq.formats.seeded)."""
    from auditq.formats import build_format, make_format
    from auditq.formats.seeded import with_seeds

    formats = [build_format(p) for p in parsed]
    if "fp" not in [f.name for f in formats]:
        formats.insert(0, make_format("fp"))
    return with_seeds(formats, seeds, seed)


_READY = ("config", "waivers", "today", "cache", "calibration_lines")


def audit_request(*, artifact_formats: Iterable["Format"] = (), **given: Any) -> AuditRequest:
    """A request for library callers and tests: CheckOptions fields and ready objects (config, waivers, today,
    cache, calibration_lines) as keywords; the suite dir is loaded and the formats built here.

    No light-stage validation: the caller vouches for its inputs (`auditq check` runs auditq.validate first).
    """
    from auditq.formats import make_formats
    from auditq.formats.seeded import with_seeds
    from auditq.suite.records import load_suite, resolve_suite

    ready = {key: given.pop(key) for key in _READY if key in given}
    known = {f.name for f in fields(CheckOptions)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"audit_request: unknown option(s) {', '.join(unknown)}")
    options = CheckOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    suite = load_suite(resolve_suite(options.suite))
    fail_on = options.fail_on or ("fail" if options.allow_inconclusive else "inconclusive")
    formats = with_seeds(make_formats(list(options.formats)), options.seeds, options.seed)
    return AuditRequest(options=options, suite=suite, formats=tuple(formats),
                        artifact_formats=tuple(artifact_formats), fail_on=fail_on, **ready)
