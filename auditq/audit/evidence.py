"""Weight-space evidence: are UNLEARNED's quantized integer codes the same as BASE's?

Probes can miss things; the codes cannot. When every code (and every scale) of UNLEARNED in a
format equals BASE's, the two deployed models are the same model: the unlearning does not
exist in that format, whatever the probes say. (Zhang et al.: small unlearning updates fall
inside one quantization cell, so 4-bit rounding maps both models onto the same grid point.)

Only one checkpoint is resident at a time, so nothing here compares two live models. A format,
while applied to a role, records per tensor (``CodeRecorder``):

- ``codes``: the integer codes, an int array whose row-major order is the HF weight's element
  order (``codes.reshape(-1)[i]`` quantizes ``weight.reshape(-1)[i]``);
- ``step``: the quantization step (the value of one code unit), either the same shape as
  ``codes`` or ``(codes.shape[0], G)`` with ``group_of_col`` (``codes.shape[1]`` ints) naming
  each column's group, or ``(G, codes.shape[1])`` with ``group_of_row`` (``codes.shape[0]`` ints) for a
  tensor stored (in, out) such as transformers' Conv1D, whose groups run along the stored rows; ``None`` when the format has no uniform step (the mean |Δw| is then not
  in step units and is left out).

Files: ``<workdir>/codes/<format>/<role>/<n>.npz`` plus ``index.json`` (tensor name → file),
loaded with ``allow_pickle=False``. ``compute_evidence`` reads them afterwards, one tensor at a
time, together with both checkpoints' full-precision weights from their safetensors files (also
one tensor at a time), so memory stays O(one tensor).

Reported per format: the share of UNLEARNED's codes equal to BASE's, per tensor and overall; the
mean |w_unlearned − w_base| in units of BASE's step; whether the scales are identical; the
full-precision tensors the format leaves unquantized that differ between the two; and
``bit_identical`` — every code, every scale and every unquantized tensor the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from auditq.formats.code_recorder import codes_dir, read_index
from auditq.regular_file import read_text, require_regular

ROLES = ("base", "unlearned")
IDENTICAL_NOTE = "UNLEARNED is bit-identical to BASE in this format: the unlearning does not exist in this format, " \
                 "whatever the probes say"


def _load(root: Path, entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
    with np.load(root / entry["file"], allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _full_step(record: Mapping[str, np.ndarray], start: int = 0, stop: int | None = None) -> np.ndarray | None:
    """The step of every code in rows start:stop (all rows by default), shaped like those codes."""
    step = record.get("step")
    if step is None:
        return None
    codes = record["codes"][start:stop]
    if step.shape == record["codes"].shape:
        return step[start:stop]
    if "group_of_col" in record:
        return step[start:stop][:, record["group_of_col"]]
    if "group_of_row" in record:  # a tensor stored (in, out) (Conv1D): groups run down its rows
        return step[record["group_of_row"][start:stop], :]
    return np.broadcast_to(step, record["codes"].shape)[start:stop].reshape(codes.shape)


class WeightFiles:
    """Read a checkpoint's tensors by name from its safetensors files, one at a time."""

    def __init__(self, path: Path | None) -> None:
        self.where: dict[str, Path] = {}
        if path is None:
            return
        from safetensors import safe_open

        for file in sorted(Path(path).glob("*.safetensors")):
            with safe_open(str(require_regular(file)), framework="pt") as reader:
                for key in reader.keys():
                    self.where.setdefault(key, file)

    def names(self) -> list[str]:
        return list(self.where)

    def get(self, name: str) -> np.ndarray | None:
        file = self.where.get(name)
        if file is None:
            return None
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as reader:
            return reader.get_tensor(name).float().numpy()

    def shape(self, name: str) -> tuple[int, ...] | None:
        file = self.where.get(name)
        if file is None:
            return None
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as reader:
            return tuple(reader.get_slice(name).get_shape())

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows start:stop of the tensor (first dimension) as float32, read without the rest of it."""
        from safetensors import safe_open

        with safe_open(str(self.where[name]), framework="pt") as reader:
            return reader.get_slice(name)[start:stop].float().numpy()


#: elements of one block of rows that evidence works on at once (float64 scratch stays ~O(8 MiB))
EVIDENCE_BLOCK_ELEMENTS = 1 << 20


def _row_ranges(rows: int, cols: int) -> list[tuple[int, int]]:
    step = max(1, EVIDENCE_BLOCK_ELEMENTS // max(1, cols))
    return [(i, min(rows, i + step)) for i in range(0, rows, step)]


@dataclass(frozen=True)
class TensorEvidence:
    name: str
    n: int
    equal: int
    mean_abs_delta_steps: float | None
    scales_identical: bool | None

    @property
    def share_equal(self) -> float:
        return self.equal / self.n if self.n else 1.0


def _tensor_evidence(name: str, base: dict[str, np.ndarray], unl: dict[str, np.ndarray],
                     weights: Mapping[str, WeightFiles]) -> TensorEvidence | None:
    b, u = base["codes"], unl["codes"]
    if b.shape != u.shape:
        return None
    equal = int(np.count_nonzero(b == u))
    step_b, step_u = base.get("step"), unl.get("step")
    scales_identical = None if step_b is None or step_u is None else bool(
        step_b.shape == step_u.shape and np.array_equal(step_b, step_u))
    mean_delta = None
    if base.get("step") is not None:
        mean_delta = _mean_delta_steps(name, base, b.shape, weights)
    return TensorEvidence(name, int(b.size), equal, mean_delta, scales_identical)


def _mean_delta_steps(name: str, base: dict[str, np.ndarray], shape: tuple[int, ...],
                      weights: Mapping[str, WeightFiles]) -> float | None:
    """mean |w_unlearned − w_base| / |step| over codes with a non-zero step, a block of rows at a time.

    Rows of the codes are rows of the HF tensor when its first dimension matches; otherwise the two
    tensors are read whole (a reshaped tensor: rare, and small).
    """
    shape_b, shape_u = weights["base"].shape(name), weights["unlearned"].shape(name)
    size = int(np.prod(shape))
    if shape_b is None or shape_u is None or int(np.prod(shape_b)) != size or int(np.prod(shape_u)) != size:
        return None
    by_rows = len(shape) == 2 and shape_b[0] == shape[0] == shape_u[0]
    ranges = _row_ranges(shape[0], shape[1]) if by_rows else [(0, shape[0])]
    total, count = 0.0, 0
    for start, stop in ranges:
        full = np.abs(_full_step(base, start, stop))  # llama.cpp's Q4_0 stores d = max / -8: a negative scale
        if by_rows:
            wb, wu = weights["base"].rows(name, start, stop), weights["unlearned"].rows(name, start, stop)
        else:
            wb, wu = weights["base"].get(name), weights["unlearned"].get(name)
        block = full.shape
        delta = np.abs(wu.reshape(block).astype(np.float64) - wb.reshape(block))
        ok = full > 0
        total += float((delta[ok] / full[ok]).sum())
        count += int(ok.sum())
    return total / count if count else None


def _changed_unquantized(covered: set[str], weights: Mapping[str, WeightFiles]) -> list[str]:
    """Full-precision tensors outside the recorded codes that differ between BASE and UNLEARNED."""
    changed = []
    for name in weights["base"].names():
        if name in covered:
            continue
        shape_b, shape_u = weights["base"].shape(name), weights["unlearned"].shape(name)
        if shape_u is None or shape_b != shape_u:
            changed.append(name)
            continue
        rows = shape_b[0] if shape_b else 1
        cols = int(np.prod(shape_b[1:])) if len(shape_b) > 1 else 1
        if not shape_b:  # a scalar: no rows to slice
            same = np.array_equal(weights["base"].get(name), weights["unlearned"].get(name))
        else:
            same = all(np.array_equal(weights["base"].rows(name, a, z), weights["unlearned"].rows(name, a, z))
                       for a, z in _row_ranges(rows, cols))
        if not same:
            changed.append(name)
    return changed


def iter_tensor_evidence(workdir: Path, fmt_name: str,
                         weights: Mapping[str, WeightFiles]) -> Iterator[tuple[TensorEvidence, str]]:
    base_root, unl_root = codes_dir(workdir, fmt_name, "base"), codes_dir(workdir, fmt_name, "unlearned")
    base_index, unl_index = read_index(base_root), read_index(unl_root)
    for name, entry in base_index.items():
        if name not in unl_index:
            continue
        found = _tensor_evidence(name, _load(base_root, entry), _load(unl_root, unl_index[name]), weights)
        if found is not None:
            yield found, entry.get("kind", "codes")


def compute_evidence(workdir: Path, fmt_name: str, checkpoint_paths: Mapping[str, Path | None],
                     max_tensors_listed: int = 400) -> dict[str, Any] | None:
    """The evidence dict for one format, or None when either role recorded nothing (format without codes,
    a row served from the result cache, a role that failed)."""
    for role in ROLES:
        error = codes_dir(workdir, fmt_name, role) / "error.json"
        if error.is_file():
            return {"error": f"could not read the {role} model's codes: {json.loads(read_text(error))}"}
    base_index = read_index(codes_dir(workdir, fmt_name, "base"))
    unl_index = read_index(codes_dir(workdir, fmt_name, "unlearned"))
    if not base_index or not unl_index:
        return None
    weights = {role: WeightFiles(checkpoint_paths.get(role)) for role in ROLES}
    tensors: list[TensorEvidence] = []
    kinds: set[str] = set()
    for found, kind in iter_tensor_evidence(workdir, fmt_name, weights):
        tensors.append(found)
        kinds.add(kind)
    if not tensors:
        return None
    n = sum(t.n for t in tensors)
    equal = sum(t.equal for t in tensors)
    with_delta = [t for t in tensors if t.mean_abs_delta_steps is not None]
    mean_delta = (sum(t.mean_abs_delta_steps * t.n for t in with_delta) / sum(t.n for t in with_delta)
                  if with_delta else None)
    scales = [t.scales_identical for t in tensors if t.scales_identical is not None]
    scales_identical = all(scales) if scales else None
    have_files = all(weights[r].names() for r in ROLES)
    changed = _changed_unquantized({t.name for t in tensors}, weights) if have_files else None
    codes_identical = equal == n
    bit_identical = bool(codes_identical and scales_identical is not False and changed == [])
    evidence: dict[str, Any] = {
        "codes_equal_share": equal / n,
        "codes_compared": n,
        "tensors_compared": len(tensors),
        "tensors_identical": sum(1 for t in tensors if t.equal == t.n),
        "mean_abs_delta_steps": mean_delta,
        "scales_identical": scales_identical,
        "unquantized_changed": changed,
        "bit_identical": bit_identical,
        "code_kind": "dequantized values" if kinds == {"values"} else
                     ("integer codes" if kinds == {"codes"} else "integer codes and dequantized values"),
        "per_tensor": {t.name: {"codes_equal_share": t.share_equal, "n": t.n,
                                "mean_abs_delta_steps": t.mean_abs_delta_steps}
                       for t in tensors[:max_tensors_listed]},
    }
    if len(tensors) > max_tensors_listed:
        evidence["per_tensor_truncated"] = len(tensors) - max_tensors_listed
    evidence["summary"] = summary_line(evidence)
    return evidence


def summary_line(evidence: Mapping[str, Any]) -> str:
    """One sentence for the report row."""
    share = evidence["codes_equal_share"]
    delta = evidence.get("mean_abs_delta_steps")
    text = (f"{share:.1%} of UNLEARNED's {evidence.get('code_kind', 'codes')} equal BASE's "
            f"({evidence['tensors_identical']}/{evidence['tensors_compared']} tensors identical)")
    if delta is not None:
        text += f"; mean |Δw| = {delta:.3g} quantization steps"
    if evidence.get("bit_identical"):
        return f"{IDENTICAL_NOTE} ({text})"
    changed = evidence.get("unquantized_changed")
    if share == 1.0 and changed:
        text += f"; every quantized code is identical, only {len(changed)} unquantized tensor(s) differ " \
                f"(e.g. {changed[0]})"
    elif share == 1.0 and evidence.get("scales_identical") is False:
        text += "; every code is identical, only the scales differ"
    return text


def evidence_for_formats(workdir: Path, fmt_names: list[str],
                         checkpoint_paths: Mapping[str, Path | None]) -> dict[str, dict[str, Any]]:
    """format name → evidence, for the formats that recorded codes for both roles (errors become a note)."""
    found: dict[str, dict[str, Any]] = {}
    for name in fmt_names:
        try:
            evidence = compute_evidence(workdir, name, checkpoint_paths)
        except Exception as exc:  # noqa: BLE001 - evidence is supplementary: never lose the audit over it
            text = str(exc).strip().splitlines()
            evidence = {"error": f"{type(exc).__name__}: {text[0] if text else ''}"}
        if evidence is not None:
            found[name] = evidence
    return found


def through_cache(session, fmt, checkpoints: Mapping[str, Any], found: dict[str, Any] | None) -> dict[str, Any] | None:
    """Store measured evidence in the result cache (auditq.cache.store), or read it back for rows served from it.

    Keyed like a cache entry of BASE in this format plus UNLEARNED's file hashes, so a fully cached audit
    reports the same evidence as the run that measured it.
    """
    base, unlearned = checkpoints.get("base"), checkpoints.get("unlearned")
    material_of = getattr(session, "material", None)
    if session is None or base is None or unlearned is None or material_of is None:
        return found
    if not session.enabled(fmt, base) or not getattr(unlearned, "file_hashes", None):
        return found
    from auditq.cache.store import entry_key

    material = {**material_of(fmt, base, "weight_evidence"), "unlearned": dict(sorted(unlearned.file_hashes.items()))}
    key = entry_key(material)
    if found is not None and "error" not in found:
        session.cache.put(key, material, {"weight_evidence": found})
        return found
    data = session.cache.get(key)
    cached = data.get("weight_evidence") if isinstance(data, dict) else None
    return cached if isinstance(cached, dict) else found
