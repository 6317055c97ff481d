"""GPTQ through GPTQModel (the engine transformers/optimum use for GPTQ), scored as deployed.

Format strings (family ``gptq``): ``gptq4``, ``gptq3``, ``gptq8``, ``gptq2`` with options

- ``:gG``      group size G (default 128, or the largest power of two below it that divides
               every quantized input width);
- ``:act``     act-order (``desc_act=True``); without it GPTQModel's default applies
               (``desc_act=False`` with its group-aware reordering, reported as act_group_aware);
- ``:dequant`` score exactly dequantized float32 weights instead of loading the saved
               checkpoint back through GPTQModel's kernel (the two agree within 1e-3 in log-prob
               on CPU; see tests/formats/test_gptq.py).

``apply()``: the Checkpoint's in-memory model is saved once per checkpoint to
``ctx.workdir/hf-source/<key>`` (safetensors; the model is only read), quantized with
``GPTQModel.load(src, QuantizeConfig(bits, group_size, desc_act, sym=True)).quantize(
ctx.calibration_texts).save(ctx.workdir/gptqmodel/<key>/<format>)`` and that checkpoint is
loaded back with ``GPTQModel.load`` (CPU: the TorchLinear kernel with float32 activations;
CUDA: GPTQModel's automatic kernel in float16) and yielded as a TorchCausalLM. The quantized
dir is deleted on exit unless ``ctx.keep_quantized``. Quantization runs on CUDA when
available (``ctx.device`` overrides). Calibration is ``ctx.calibration_texts``
as given (generic text by default, never the forget set unless the user asks).

Missing GPTQModel: ``BackendUnavailable`` (install hint ``pip install 'auditq[gptq]'``).

Existing GPTQ/AWQ checkpoints (``--artifact DIR``)
--------------------------------------------------
::

    from auditq.formats.gptq import QuantizedArtifact

    fmt = QuantizedArtifact.from_path(Path("unlearned-gptq-4bit"),            # role "unlearned"
                                      role_paths={"base": Path("base-gptq")}) # optional
    fmt.name              # "gptq-dir:unlearned-gptq-4bit" (or name=...)
    fmt.roles, fmt.path_for("base")
    fmt.validate({"base": base_ckpt, "unlearned": unl_ckpt})   # InputError on a mismatch
    with fmt.apply(checkpoint, dataclasses.replace(ctx, role=role)) as lm:
        ...

Same contract as ``auditq.formats.gguf.GGUFArtifact``: ``apply()`` needs
``ctx.role``; a role without a directory raises ``ArtifactMissing`` (a
BackendUnavailable: UNKNOWN for that cell); ``from_path`` raises InputError for a path that is
not a GPTQ/AWQ checkpoint directory. ``dequantize=True`` scores dequantized weights instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from auditq.errors import BackendUnavailable, InputError, MeasurementError
from auditq.formats.base import ArtifactFormat, Format, FormatContext, FormatSpec
from auditq.formats.gptqmodel.engine_format import GPTQModelFormat, first_line, scoring
from auditq.formats.gptqmodel.env import GPTQ_INSTALL_HINT, ArtifactMissing, package_version, pick_device
from auditq.formats.gptqmodel.load import dequantized_model, load_quantized, quant_method
from auditq.formats.gptqmodel.quantize import QuantizeRequest
from auditq.formats.options import GPTQOptions
from auditq.regular_file import read_text

__all__ = ["GPTQ_INSTALL_HINT", "ArtifactMissing", "GPTQFormat", "GPTQOptions", "QuantizedArtifact"]

class GPTQFormat(GPTQModelFormat, Format):
    """``gptqN[:gG][:act][:dequant]``: GPTQModel GPTQ, sym=True, lm_head and embeddings unquantized."""

    engine = "gptqmodel"
    method = "gptq"
    has_codes = True

    def __init__(self, spec: FormatSpec, options: GPTQOptions) -> None:
        super().__init__(spec, options)
        self._runs: dict[str, dict[str, Any]] = {}

    def _request(self, group_size: int, device: str, seed: int) -> QuantizeRequest:
        return QuantizeRequest(method="gptq", bits=self.options.bits, group_size=group_size,
                               desc_act=self.options.desc_act, sym=True, device=device,
                               dtype=torch.float32 if device == "cpu" else torch.float16, seed=seed)

    def details(self) -> dict[str, Any]:
        info = super().details()
        info["act_order"] = self.options.desc_act
        info["sym"] = True
        return info


# --------------------------------------------------------------------------- user-supplied checkpoints


def _read_config(path: Path) -> dict[str, Any]:
    return json.loads(read_text(path / "config.json"))


class QuantizedArtifact(ArtifactFormat):
    """A GPTQ or AWQ checkpoint directory produced outside auditq, scored as one more row."""

    engine = "gptqmodel"
    needs_resident = False

    def __init__(self, spec: FormatSpec, role_paths: Mapping[str, Path], default_role: str = "unlearned",
                 dequantize: bool = False) -> None:
        super().__init__(spec, role_paths, default_role)
        self.dequantize = dequantize

    @classmethod
    def from_path(cls, path: Path | str, role_paths: Mapping[str, Path | str] | None = None, *,
                  role: str = "unlearned", name: str | None = None, dequantize: bool = False) -> QuantizedArtifact:
        """Artifact row for `path` (the `role` model's checkpoint dir) plus optional dirs for other roles."""
        paths: dict[str, Path] = {role: Path(path)}
        for other, other_path in (role_paths or {}).items():
            if other in paths and Path(other_path) != paths[other]:
                raise InputError(f"two quantized checkpoints given for the {other} model")
            paths[other] = Path(other_path)
        methods = set()
        for r, p in paths.items():
            if not p.is_dir():
                raise InputError(f"quantized checkpoint for the {r} model {p} does not exist or is not a directory")
            if not (p / "config.json").is_file():
                raise InputError(f"quantized checkpoint {p} has no config.json")
            if not any(p.glob("*.safetensors")):
                raise InputError(f"quantized checkpoint {p} has no *.safetensors weights")
            methods.add(quant_method(p))
        if len(methods) > 1:
            raise InputError(f"quantized checkpoints mix methods {sorted(methods)}; give one method per --artifact row")
        method = methods.pop()
        raw = name or f"{method}-dir:{Path(path).name}"
        return cls(FormatSpec(raw=raw, family=method, head=f"{method}-dir", args=(str(Path(path)),)),
                   paths, role, dequantize)

    @classmethod
    def parse(cls, spec: FormatSpec) -> QuantizedArtifact:
        raise InputError(f"format {spec.raw!r}: quantized checkpoint directories are audited with --artifact DIR")

    def validate(self, checkpoints: Mapping[str, Any]) -> None:
        """Before any scoring: every directory's width, depth and vocabulary match its role's checkpoint."""
        for role, path in self.role_paths.items():
            if role not in checkpoints:
                raise InputError(f"quantized checkpoint {path} is given for the {role} model, "
                                 f"but there is no {role} checkpoint")
            self._check_matches(path, checkpoints[role])

    @staticmethod
    def _check_matches(path: Path, checkpoint) -> None:
        config = _read_config(path)
        text = config.get("text_config") or {}
        for key in ("hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size"):
            got = config.get(key, text.get(key))
            want = getattr(checkpoint.config, key, None)
            if got is not None and want is not None and int(got) != int(want):
                raise InputError(f"quantized checkpoint {path.name} does not match the {checkpoint.path} checkpoint: "
                                 f"{key} {got} vs {want}")

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        from auditq.checkpoint.load import fingerprint

        role = ctx.role
        if not role:
            raise MeasurementError("a quantized-checkpoint artifact needs ctx.role (base, unlearned, ...) "
                                   "to pick its directory")
        path = self.role_paths.get(role)
        if path is None:
            raise ArtifactMissing(f"no quantized checkpoint was given for the {role} model "
                                  f"(given: {', '.join(self.roles)})")
        self._check_matches(path, checkpoint)
        device = pick_device(ctx)
        from auditq.formats.resident import free_resident

        free_resident(checkpoint)  # the given checkpoint is loaded instead: one model at a time
        try:
            if self.dequantize:
                model, info = dequantized_model(path, ctx.workdir, device)
            else:
                model, info = load_quantized(path, device, ctx.workdir)
        except (BackendUnavailable, MeasurementError, InputError):
            raise
        except Exception as exc:
            raise MeasurementError(f"cannot load quantized checkpoint {path}: {first_line(exc)}") from exc
        qc = _read_config(path).get("quantization_config") or {}
        run: dict[str, Any] = {
            "source": str(path),
            "files": fingerprint(path),
            "method": info.pop("quant_method", None),
            "bits": qc.get("bits"),
            "group_size": qc.get("group_size"),
            "act_order": qc.get("desc_act"),
            "sym": qc.get("sym", None if "zero_point" not in qc else not qc.get("zero_point")),
            "checkpoint_format": qc.get("checkpoint_format") or qc.get("version") or qc.get("format"),
            "quantizer": (qc.get("meta") or {}).get("quantizer"),
            "device": device,
            **info,
        }
        self._runs[role] = run
        with scoring(model, checkpoint, ctx, f"{info.get('kernel')} {info.get('compute_dtype')} ({path.name})") as lm:
            del model
            yield lm

    def details(self) -> dict[str, Any]:
        info: dict[str, Any] = {"engine": self.engine, "engine_version": package_version("gptqmodel"),
                                "artifacts": {r: str(p) for r, p in self.role_paths.items()},
                                "scoring": "dequantized float32 weights" if self.dequantize
                                           else "checkpoint loaded with GPTQModel"}
        if self._runs:
            info.update({k: v for k, v in list(self._runs.values())[-1].items() if k != "files"})
            info["files"] = {role: r.get("files") for role, r in self._runs.items()}
        return info
