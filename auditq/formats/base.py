"""The format interface: turn a full-precision checkpoint into a LanguageModel as deployed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from auditq.backends.base import LanguageModel
from auditq.formats.spec import STACKABLE, FormatSpec

if TYPE_CHECKING:
    from auditq.checkpoint.load import Checkpoint
    from auditq.suite.records import Suite


@dataclass(frozen=True)
class FormatContext:
    """What a format may need besides the checkpoint: a scratch dir, calibration texts, a batch size, and the
    named settings below (typed fields, so a misspelt key is an error and every reader is found by grep)."""

    workdir: Path
    batch_size: int = 16
    calibration_texts: tuple[str, ...] = ()
    seed: int = 0
    #: padded tokens per forward pass (rows × width); None: `batch_size` rows whatever their length
    max_batch_tokens: int | None = None
    #: the model role being applied (base, unlearned, retrain, reference): an artifact picks its file by it,
    #: code recorders and engine scratch files are labelled with it (the executor sets it per role)
    role: str | None = None
    #: texts the GGUF tokenizer-parity check compares the HF and llama.cpp tokenizers on
    parity_texts: tuple[str, ...] = ()
    #: the probe suite (relearn:* trains on its data)
    suite: "Suite | None" = None
    #: the resolved torch device ("cpu", "cuda:0"); None: the engine's default (CUDA when available)
    device: str | None = None
    #: the resolved placement {"device", "dtype", "device_map"}: part of the result cache's key
    compute: Mapping[str, Any] | None = None
    #: llama.cpp CPU threads (None: llama.cpp's default)
    threads: int | None = None
    #: llama.cpp context size for GGUF rows
    gguf_n_ctx: int = 512
    #: record GGUF codes under this format name (a GGUF artifact's stand-in records as the artifact's row)
    codes_as: str | None = None
    #: keep the quantized GGUF file / GPTQ-AWQ directory after the row (debugging)
    keep_gguf: bool = False
    keep_quantized: bool = False
    #: record integer codes for weight-space evidence (auditq.formats.code_recorder; ~1 byte per weight on disk)
    weight_evidence: bool = True
    #: where a failing engine's log is copied (auditq.formats.engine_log); None: <system temp>/auditq-logs
    log_dir: Path | None = None


class Format(ABC):
    """One deployable precision. Subclasses register under a family name in auditq.formats."""

    #: engine name reported next to every row, e.g. "auditq-rtn" or "llama.cpp"
    engine: str = ""
    #: True when apply() records integer codes for auditq.audit.evidence (weight-space evidence)
    has_codes: bool = False

    def __init__(self, spec: FormatSpec, options: Any = None) -> None:
        self.spec = spec
        #: what the family's parser (auditq.formats.options) made of the spec's options
        self.options = options

    @property
    def name(self) -> str:
        return self.spec.raw

    @classmethod
    def parse(cls, spec: FormatSpec) -> "Format":
        """Build from the family's torch-free option parser (InputError with one line when the options are wrong).

        The same parser runs in the validation stage (auditq.formats.parse_format), so no rule is checked twice.
        """
        from auditq.formats import parse_options

        return cls(spec, parse_options(spec))

    @abstractmethod
    def apply(self, checkpoint: Checkpoint, ctx: FormatContext) -> AbstractContextManager[LanguageModel]:
        """Context manager yielding the checkpoint as deployed in this format.

        Implementations must leave `checkpoint.model` exactly as they found it on exit,
        so every format is derived from the same in-memory full-precision copy.
        """

    def details(self) -> dict[str, Any]:
        """Engine, version and anything measured about the produced artefact (tensor types ...)."""
        return {"engine": self.engine}

    #: False for engines that build a model of their own (bnb, GPTQ/AWQ, GGUF): the executor does not
    #: load the checkpoint for them, runs them after the in-place formats, and they free it before
    #: building theirs (auditq.formats.resident)
    needs_resident: bool = True

    #: True when the result depends on FormatContext.seed (relearning, GPTQ/AWQ): `--seeds N` repeats it
    #: under N seeds (auditq.formats.seeded); deterministic formats run once
    stochastic: bool = False

    @property
    def stackable(self) -> bool:
        """True for transformations of the in-memory torch model (fp8, prune, relearn): they can be stacked
        after another format with "+" (auditq.formats.compose), which hands them its model."""
        return self.spec.family in STACKABLE

    def suite_view(self, suite: "Suite", seed: int = 0) -> "Suite":
        """The part of the suite this row's probes score (every model in the row alike).

        Identity for almost every format; relearn:forget trains on a seeded half of the forget
        records and returns the suite without them, so its row scores only the other half.
        Must be deterministic in (suite, seed): the pipeline calls it again when it builds the report.
        """
        return suite


class ArtifactFormat(Format):
    """A format backed by quantized files a user already has (--artifact), one per model role.

    Subclasses pick the file for `ctx.role` in apply(); roles without a file are theirs to handle.
    """

    def __init__(self, spec: FormatSpec, role_paths: Mapping[str, Path], default_role: str = "unlearned") -> None:
        super().__init__(spec)
        self.role_paths: dict[str, Path] = {str(r): Path(p) for r, p in role_paths.items()}
        self.default_role = default_role
        self._runs: dict[str, dict[str, Any]] = {}

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.role_paths)

    def path_for(self, role: str) -> Path | None:
        return self.role_paths.get(role)
