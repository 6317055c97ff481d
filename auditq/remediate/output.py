"""Writing the remediated checkpoint safely.

- Never into an input: --out may not be, contain, or lie inside BASE, the suite, or any other input.
- An --out that exists and is not empty is refused unless --force (exit 2, one line).
- Everything is written into a staging directory beside --out (same filesystem) and renamed onto
  --out only when complete, so Ctrl-C or a crash leaves no half-written checkpoint at --out; the
  staging directory is removed on any failure.
- With --force, an existing --out is moved aside, the staged dir renamed in, and the old one deleted
  only after that rename succeeded (auditq.report.dirswap.swap_in, shared with the reports' --out).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from auditq.checkpoint.files import TOKENIZER_FILES
from auditq.errors import InputError
from auditq.regular_file import present, require_regular, resolve

if TYPE_CHECKING:  # torch is imported where tensors are read, so validation (auditq.remediate.validate) stays light
    import torch

STAGING_PREFIX = ".auditq-staging-"
RECORD_NAME = "auditq-remediation.json"


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_out_dir(out: Path, inputs: Sequence[Path], force: bool) -> None:
    """Raise InputError (exit 2) if writing to `out` could touch an input or clobber a non-empty dir."""
    target = resolve(out, "--out")  # a symlink loop: one line, not pathlib's RuntimeError
    for path in inputs:
        if path is None:
            continue
        source = resolve(path)
        if _overlaps(target, source):
            raise InputError(f"--out {out} overlaps the input {path}: choose a directory outside every input")
    if target.exists():
        if not target.is_dir():
            raise InputError(f"--out {out} exists and is not a directory")
        if any(target.iterdir()) and not force:
            raise InputError(f"--out {out} exists and is not empty (pass --force to replace it)")


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A fresh directory beside `out`; removed if the block raises (KeyboardInterrupt included).

    The caller renames it onto `out` with `commit` inside the block.
    """
    target = Path(out).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}-", dir=target.parent))
    try:
        yield stage
    finally:  # after a commit the staging path no longer exists; otherwise nothing is left behind
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _normal_permissions(root: Path) -> None:
    """mkdtemp (here and in the report writer) creates 0700 dirs; give the tree the umask's usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def commit(stage: Path, out: Path) -> Path:
    """Rename the complete `stage` onto `out` (auditq.report.dirswap.swap_in: an existing `out` is replaced as a whole,
    never lost, and Ctrl-C cannot land between its renames)."""
    from auditq.report.dirswap import swap_in

    _normal_permissions(stage)
    return swap_in(stage, out)


def base_weight_dtype(base_dir: Path) -> torch.dtype | None:
    """The floating dtype of the base checkpoint's stored weights (first tensor of the first file)."""
    import torch
    from safetensors import safe_open

    files = sorted(Path(base_dir).glob("*.safetensors"))
    if not files:
        return None
    with safe_open(str(require_regular(files[0])), framework="pt") as handle:
        for key in handle.keys():
            tensor = handle.get_slice(key)
            dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}.get(tensor.get_dtype())
            if dtype is not None:
                return dtype
    return None


def save_checkpoint(model, tokenizer, base_dir: Path, dest: Path) -> list[Path]:
    """safetensors weights (in the base's stored dtype) + config, and the base's tokenizer files byte for byte.

    Copying the tokenizer files (rather than re-serialising the tokenizer) keeps the vocabulary
    and any extra files (chat template, sentencepiece model) exactly the base's.
    """
    dest.mkdir(parents=True, exist_ok=True)
    dtype = base_weight_dtype(base_dir)
    original = next(model.parameters()).dtype
    if dtype is not None and dtype != original:
        model.to(dtype)
    try:
        model.save_pretrained(str(dest), safe_serialization=True)
    finally:
        if dtype is not None and dtype != original:
            model.to(original)
    copied = []
    for name in TOKENIZER_FILES:
        source = Path(base_dir) / name
        if present(source):  # a FIFO would block copy2: NotRegular instead (the light stage refused it already)
            shutil.copy2(source, dest / name)
            copied.append(dest / name)
    if not copied:
        tokenizer.save_pretrained(str(dest))
    return sorted(dest.iterdir())


def write_record(dest: Path, record: dict) -> Path:
    """NEW_DIR/auditq-remediation.json (sorted keys, trailing newline), written via a temp file."""
    path = dest / RECORD_NAME
    tmp = dest / (RECORD_NAME + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class WeightDiff:
    """What changed between two checkpoints' stored tensors, bit for bit."""

    changed: dict[str, int]          # tensor name -> entries that differ
    sizes: dict[str, int]            # tensor name -> entries
    missing: tuple[str, ...]         # in base, not in new
    extra: tuple[str, ...]           # in new, not in base

    @property
    def changed_entries(self) -> int:
        return sum(self.changed.values())

    @property
    def total_entries(self) -> int:
        return sum(self.sizes.values())


def read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(Path(directory).glob("*.safetensors")):
        tensors.update(load_file(str(require_regular(file))))
    return tensors


def weight_diff(base_dir: Path, new_dir: Path) -> WeightDiff:
    """Compare every stored tensor of two checkpoints bit for bit (as raw bytes, so NaNs and -0.0 count)."""
    import torch

    base, new = read_tensors(base_dir), read_tensors(new_dir)
    changed, sizes = {}, {}
    for name, a in base.items():
        if name not in new:
            continue
        b = new[name]
        sizes[name] = a.numel()
        if a.shape != b.shape or a.dtype != b.dtype:
            changed[name] = a.numel()
            continue
        if a.numel() == 0:
            continue
        ai = a.contiguous().view(torch.uint8).reshape(a.numel(), -1)
        bi = b.contiguous().view(torch.uint8).reshape(b.numel(), -1)
        count = int((ai != bi).any(dim=1).sum())
        if count:
            changed[name] = count
    return WeightDiff(changed, sizes, tuple(sorted(set(base) - set(new))), tuple(sorted(set(new) - set(base))))


def rtn_code_changes(base_dir: Path, new_dir: Path, names, bits: int = 4) -> dict[str, dict[str, float]]:
    """For each named 2-D tensor: the fraction of its per-output-channel RTN-`bits` codes that differ between
    the two checkpoints, and the mean |Δw| in units of the original's quantization step Δ = max|w|/2^(bits−1).

    This is the quantity the paper's failure hinges on: if the unlearning update is much smaller than Δ,
    rounding maps both models onto the same codes and the forgotten data comes back.
    """
    import torch

    from auditq.formats.rtn import rtn_codes, rtn_scale, to_groups

    base, new = read_tensors(base_dir), read_tensors(new_dir)
    out: dict[str, dict[str, float]] = {}
    for name in names:
        a, b = base.get(name), new.get(name)
        if a is None or b is None or a.dim() != 2 or a.shape != b.shape:
            continue
        ga, _ = to_groups(a.double(), None)
        gb, _ = to_groups(b.double(), None)
        codes_a, _ = rtn_codes(ga, bits)
        codes_b, _ = rtn_codes(gb, bits)
        step = rtn_scale(ga, bits).clamp_min(torch.finfo(torch.float64).tiny)
        out[name] = {"codes_changed": float((codes_a != codes_b).double().mean()),
                     "mean_abs_delta_in_steps": float(((gb - ga).abs() / step).mean())}
    return out
