"""Record a format's quantized integer codes while it is applied to one checkpoint (the evidence's input).

A format that quantizes writes, per tensor, the codes, the step and the column groups here
(``<workdir>/codes/<format>/<role>/<n>.npz`` + ``index.json``); auditq.audit.evidence reads them
afterwards to compare BASE's codes with UNLEARNED's. The writer lives with the formats (the stage that
produces the codes) and the reader with the audit, so formats never import the audit stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

CODES_DIR = "codes"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def codes_dir(workdir: Path, fmt_name: str, role: str) -> Path:
    return Path(workdir) / CODES_DIR / _slug(fmt_name) / _slug(role)


def recording_enabled(ctx) -> bool:
    """On by default; ``FormatContext(weight_evidence=False)`` turns it off (it costs ~1 byte per weight on disk)."""
    return bool(getattr(ctx, "workdir", None)) and bool(getattr(ctx, "weight_evidence", True))


class CodeRecorder:
    """Writes one role's codes in one format, tensor by tensor (see the module docstring)."""

    def __init__(self, workdir: Path, fmt_name: str, role: str, kind: str = "codes") -> None:
        self.root = codes_dir(workdir, fmt_name, role)
        if self.root.exists():
            for old in self.root.iterdir():
                old.unlink()
        self.root.mkdir(parents=True, exist_ok=True)
        self.index: dict[str, dict[str, Any]] = {}
        self.kind = kind

    @classmethod
    def for_context(cls, ctx, fmt_name: str, role: str | None) -> "CodeRecorder | None":
        if not recording_enabled(ctx) or not role:
            return None
        return cls(Path(ctx.workdir), fmt_name, role)

    def add(self, name: str, codes: np.ndarray, step: np.ndarray | None = None,
            group_of_col: np.ndarray | None = None, kind: str | None = None, transposed: bool = False) -> None:
        """Record one tensor. `kind` "values" marks codes that are dequantized values (no integer code).

        codes/step/group_of_col describe the (out, in) view a quantizer works on. `transposed`: the HF
        tensor is stored (in, out) (transformers' Conv1D), so the codes are written transposed, in the
        stored tensor's element order, with the step as (G, out) and ``group_of_row`` naming each stored
        row's group (auditq.audit.evidence reads both layouts).
        """
        codes = np.asarray(codes)
        if transposed:
            codes = np.ascontiguousarray(codes.T)
        if codes.dtype.kind in "fiu" and (kind or self.kind) == "codes" and codes.dtype != np.int8:
            low, high = (int(codes.min()), int(codes.max())) if codes.size else (0, 0)
            codes = codes.astype(np.int8 if -128 <= low and high <= 127 else np.int16)  # ~1 byte per weight on disk
        if codes.ndim == 1:
            codes = codes.reshape(1, -1)
        arrays: dict[str, np.ndarray] = {"codes": codes}
        if step is not None:
            step = np.asarray(step, dtype=np.float32)
            if transposed and group_of_col is not None:
                arrays["step"] = np.ascontiguousarray(step.T)
                arrays["group_of_row"] = np.asarray(group_of_col, dtype=np.int64)
            elif transposed and step.shape == codes.T.shape:
                arrays["step"] = np.ascontiguousarray(step.T)
            else:
                arrays["step"] = step
                if group_of_col is not None:
                    arrays["group_of_col"] = np.asarray(group_of_col, dtype=np.int64)
        file = f"{len(self.index)}.npz"
        np.savez(self.root / file, **arrays)
        self.index[name] = {"file": file, "kind": kind or self.kind, "shape": list(codes.shape)}
        self._write_index()

    def fail(self, exc: BaseException) -> None:
        """Recording failed: compute_evidence reports this instead of the evidence (the row itself stands)."""
        text = str(exc).strip().splitlines()
        (self.root / "error.json").write_text(json.dumps(f"{type(exc).__name__}: {text[0] if text else ''}"),
                                              encoding="utf-8")

    def _write_index(self) -> None:
        (self.root / "index.json").write_text(json.dumps(self.index), encoding="utf-8")


def read_index(root: Path) -> dict[str, dict[str, Any]]:
    path = root / "index.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
