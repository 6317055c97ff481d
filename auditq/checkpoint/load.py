"""Load Hugging Face causal-LM checkpoints safely, and check that two of them are comparable.

Only safetensors weights are read (never pickles); `trust_remote_code` stays off
unless the user asks for it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from auditq.checkpoint.files import TOKENIZER_FILES, WEIGHT_GLOBS
from auditq.errors import InputError
from auditq.regular_file import open_regular, present, read_text
from auditq.safe_parse import loads_json

if TYPE_CHECKING:  # torch is imported where weights are loaded, so validation stays light (auditq.validate.inputs)
    import torch



class Checkpoint:
    """A full-precision model, its tokenizer, and the fingerprints of its files.

    The weights may be loaded lazily (`loader`): an audit whose every row comes from the result
    cache then never reads them, which for a 7B checkpoint saves minutes.
    """

    def __init__(self, path: Path, model: torch.nn.Module | None, tokenizer: object, config: object,
                 file_hashes: dict[str, str] | None = None,
                 loader: Callable[[], torch.nn.Module] | None = None) -> None:
        if model is None and loader is None:
            raise ValueError("a Checkpoint needs a model or a loader")
        self.path = path
        self.tokenizer = tokenizer
        self.config = config
        self.file_hashes = dict(file_hashes or {})
        self._model = model
        self._loader = loader
        #: True while the in-memory weights are exactly what the safetensors files hold (auditq.checkpoint.restore)
        self.weights_from_files = loader is not None
        #: the dtype the loader casts the weights to (auditq.formats.resident reads it without loading)
        self.dtype: torch.dtype | None = None

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            if self._loader is None:
                raise RuntimeError(f"checkpoint {self.path} was released and has no loader")
            self._model = self._loader()
        return self._model

    @model.setter
    def model(self, value: torch.nn.Module) -> None:
        self._model = value
        self.weights_from_files = False

    def release(self) -> bool:
        """Drop the weights (reloaded on next use) so the next checkpoint can be resident; False if not reloadable."""
        import torch

        if self._model is None or self._loader is None:
            return self._model is None
        self._model = None
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return True

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as handle:  # never blocks on a FIFO swapped in after the light stage
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_files(path: Path) -> list[Path]:
    """Weight, config and tokenizer files that define a checkpoint, in a stable order."""
    files = {p for pattern in WEIGHT_GLOBS for p in path.glob(pattern)}
    files |= {p for p in path.glob("*.safetensors.index.json")}
    files |= {path / name for name in ("config.json", "generation_config.json", *TOKENIZER_FILES)
              if present(path / name)}  # a special file raises (NotRegular), never silently skipped
    return sorted(files)


def fingerprint(path: Path) -> dict[str, str]:
    """sha256 of every weight, config and tokenizer file, keyed by file name."""
    return {p.name: sha256_file(p) for p in checkpoint_files(path)}


def validate_checkpoint_dir(path: Path, role: str) -> None:
    """Raise InputError (exit 2) with one line if `path` is not a loadable safetensors checkpoint."""
    from auditq.checkpoint.directory import check_dir

    check_dir(path, role)  # exists, is a dir, config.json, safetensors weights (pickles refused), tokenizer files
    try:
        loads_json(read_text(path / "config.json"), path / "config.json")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{role} checkpoint {path}/config.json is not valid JSON: {exc}") from None


def load_checkpoint(path: Path | str, role: str, trust_remote_code: bool = False,
                    dtype: "torch.dtype | None" = None, device: str = "cpu", lazy: bool = False,
                    device_map: str | None = None) -> Checkpoint:
    """Load a causal LM and tokenizer from a directory of safetensors weights (weights on first use if lazy).

    `device_map="auto"`: accelerate places the layers over every visible GPU (`device` is then ignored).
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    dtype = torch.float32 if dtype is None else dtype
    path = Path(path)
    validate_checkpoint_dir(path, role)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - config and tokenizer files are user input: any failure is exit 2
        raise _load_error(exc, path, role, trust_remote_code) from None

    def load_weights() -> "torch.nn.Module":
        return _load_weights(path, role, config, dtype, device, device_map, trust_remote_code)

    checkpoint = Checkpoint(path=path, model=None if lazy else load_weights(), tokenizer=tokenizer, config=config,
                            file_hashes=fingerprint(path), loader=load_weights)
    checkpoint.dtype = dtype
    return checkpoint


def _load_error(exc: Exception, path: Path, role: str, trust_remote_code: bool) -> InputError:
    """A loading failure as one line (exit 2): the files are user input."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "trust_remote_code" in str(exc) and not trust_remote_code:
        first = "it needs custom model code from the checkpoint dir; pass --trust-remote-code only if you trust it"
    return InputError(f"cannot load {role} checkpoint {path}: {first}")


def _load_weights(path: Path, role: str, config: Any, dtype: "torch.dtype", device: str, device_map: str | None,
                  trust_remote_code: bool) -> "torch.nn.Module":
    """The weights, in `dtype` on `device` (bf16 files upcast without a second copy), checked complete and finite."""
    from transformers import AutoModelForCausalLM

    from auditq.checkpoint.integrity import check_finite, check_loading_info
    from auditq.checkpoint.upcast import streamed_load_dtype, upcast_from_files

    def from_files(load_dtype: "torch.dtype"):
        return AutoModelForCausalLM.from_pretrained(
            path, config=config, dtype=load_dtype, use_safetensors=True,
            trust_remote_code=trust_remote_code, local_files_only=True, output_loading_info=True,
            **({"device_map": device_map} if device_map else {}),
        )

    first = streamed_load_dtype(path, dtype, device, device_map)  # bf16 -> float32 without a second copy
    try:
        model, info = from_files(first or dtype)
        if first is not None and not upcast_from_files(model, path, dtype):
            del model
            model, info = from_files(dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise _load_error(exc, path, role, trust_remote_code) from None
    except RuntimeError as exc:  # transformers' "For details look at the above report!" (its report is silenced)
        if "report" not in str(exc) and "state_dict" not in str(exc):
            raise
        raise InputError(f"cannot load {role} checkpoint {path}: its tensors do not match config.json's "
                         "architecture (names or shapes)") from None
    check_loading_info(info, path, role)  # transformers would random-initialise a missing weight
    check_finite(model, path, role)
    if not device_map:
        model.to(device)
    model.eval()
    return model


def check_configs_compatible(base: Path, other: Path, role: str) -> None:
    """Compare config.json architecture fields before any weights are loaded (fail fast, exit 2)."""
    from auditq.checkpoint.directory import check_compatible_configs

    check_compatible_configs(loads_json(read_text(base / "config.json"), base / "config.json"),
                             loads_json(read_text(other / "config.json"), other / "config.json"), role)


def check_compatible(base: Checkpoint, other: Checkpoint, role: str) -> None:
    """Refuse (exit 2) when two loaded checkpoints differ in architecture, sizes or tokenizer vocabulary."""
    from auditq.checkpoint.directory import ARCH_FIELDS

    for name in ARCH_FIELDS:
        a, b = getattr(base.config, name, None), getattr(other.config, name, None)
        if a != b:
            raise InputError(f"base and {role} checkpoints differ in {name}: {a} vs {b}")
    if base.tokenizer.get_vocab() != other.tokenizer.get_vocab():
        raise InputError(f"base and {role} checkpoints have different tokenizer vocabularies")
