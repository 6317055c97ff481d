"""Symmetric round-to-nearest (RTN) quantization exactly as Zhang et al. (ICLR 2025) define it.

    Q(w) = Δ · clamp(round(w / Δ), -2^(N-1), 2^(N-1) - 1),   Δ = max|w| / 2^(N-1)

computed per group of weights: per output channel (a whole row of an nn.Linear
weight) by default, or per group of G consecutive input columns with ":gG".
Options: ":emb" also quantizes embeddings, ":nohead" leaves the lm_head alone.

Layers: every nn.Linear and transformers Conv1D (GPT-2's layers, weight stored (in, out)), listed by
auditq.formats.linear_layers; groups always run along the INPUT dimension (dim 1 of a Linear weight,
dim 0 of a Conv1D weight). A head tied to the input embedding is quantized only with ":emb".

Nothing changed is not a measurement (the rule every weight transformation follows):
- a model whose layers the format cannot cover (a module that is neither nn.Linear nor Conv1D but
  holds a 2-D weight, or no layer at all) makes apply() raise MeasurementError naming the module
  type: the row is UNKNOWN, never the fp model measured again;
- when every covered element is already on the grid (rounding changed no element, e.g. a checkpoint
  that is itself the dequantized output of this very RTN), the deployed model IS the full-precision
  one: the row would repeat the fp row, so apply() raises MeasurementError "rtnN changed no weights
  of this model (...)" and the row is UNKNOWN with that reason (read the fp row for that model);
- any real change, however small, is measured, and the row's details say how much:
  changed_tensors, changed_elements, covered_tensors, covered_parameters_share (per role under "changes").
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from auditq.backends.torch_lm import TorchCausalLM
from auditq.checkpoint.restore import modified_weights, tensor_files
from auditq.formats.base import Format, FormatContext, FormatSpec
from auditq.formats.linear_layers import (ChangeCount, LinearWeight, count_changed, head_is_tied, layer_details,
                                          linear_layers, model_parameter_count, require_covered)
from auditq.formats.options import RTNOptions


def to_groups(weight: torch.Tensor, group_size: int | None) -> tuple[torch.Tensor, int]:
    """View a 2-D weight as (n_groups, group_size) rows; pad the last column group with zeros.

    Zero padding never changes a group's max|w|, so ragged widths quantize correctly.
    Returns the grouped tensor and the number of padded columns.
    """
    rows, cols = weight.shape
    size = cols if group_size is None else group_size
    pad = (-cols) % size
    if pad:
        weight = torch.nn.functional.pad(weight, (0, pad))
    return weight.reshape(rows * ((cols + pad) // size), size), pad


def from_groups(grouped: torch.Tensor, shape: torch.Size, pad: int) -> torch.Tensor:
    rows, cols = shape
    return grouped.reshape(rows, cols + pad)[:, :cols]


def rtn_scale(grouped: torch.Tensor, bits: int) -> torch.Tensor:
    """Δ per group: max|w| / 2^(N-1), shape (n_groups, 1)."""
    return grouped.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1))


def rtn_codes(grouped: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes and scales of grouped weights; an all-zero group gets Δ = 0 and codes 0."""
    delta = rtn_scale(grouped, bits)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    codes = torch.round(grouped / safe).clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return torch.where(delta > 0, codes, torch.zeros_like(codes)), delta


def rtn_quantize(weight: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """Fake-quantize a 2-D weight the way a deployed kernel dequantizes it, in the weight's own dtype.

    The integer codes are those of the stored values (computed exactly, in float64); the scale
    Δ = max|w| / 2^(N-1) is exact in the weight's dtype (a stored value over a power of two); the
    product codes × Δ is computed in that dtype (bfloat16/float16 kernels round it there). For
    float32 this equals the float64 formula rounded once, as before. Two weights with the same
    codes and scales therefore give bit-identical results in any dtype.
    """
    if weight.dim() != 2:
        raise ValueError(f"RTN expects a 2-D weight, got shape {tuple(weight.shape)}")
    rows_per_chunk = max(1, RTN_CHUNK_ELEMENTS // max(1, weight.shape[1]))
    if weight.shape[0] > rows_per_chunk:  # groups never span rows: quantize a block of rows at a time
        return torch.cat([rtn_quantize(weight[i:i + rows_per_chunk], bits, group_size)
                          for i in range(0, weight.shape[0], rows_per_chunk)])
    grouped, pad = to_groups(weight.detach().double(), group_size)
    codes, delta = rtn_codes(grouped, bits)
    dequantized = codes.to(weight.dtype) * delta.to(weight.dtype)
    return from_groups(dequantized, weight.shape, pad).to(weight.device)


#: float64 elements RTN works on at once (8 MiB: a 32k × 4096 head would otherwise need GBs of float64 scratch)
RTN_CHUNK_ELEMENTS = 1 << 20


def codes_changed_by_cast(stored: torch.Tensor, cast: torch.Tensor, bits: int, group_size: int | None) -> int:
    """How many RTN codes differ between a weight as stored and as cast to the compute dtype.

    Rounding a float32 checkpoint to bfloat16 moves a rare element across a cell boundary (or
    moves a group's max, hence Δ): that element's code then differs from the float32 model's.
    Computed a block of rows at a time (float64 scratch of RTN_CHUNK_ELEMENTS, not of the tensor).
    """
    changed = 0
    for start, stop in _row_blocks(stored):
        a, _ = to_groups(stored[start:stop].detach().double().cpu(), group_size)
        b, _ = to_groups(cast[start:stop].detach().double().cpu(), group_size)
        changed += int((rtn_codes(a, bits)[0] != rtn_codes(b, bits)[0]).sum())
    return changed


def _row_blocks(weight: torch.Tensor) -> list[tuple[int, int]]:
    """(start, stop) row ranges of about RTN_CHUNK_ELEMENTS elements (groups never span rows)."""
    rows = weight.shape[0]
    step = max(1, RTN_CHUNK_ELEMENTS // max(1, weight.shape[1] if weight.dim() > 1 else 1))
    return [(i, min(rows, i + step)) for i in range(0, rows, step)]


def rtn_codes_and_steps(weight: torch.Tensor, bits: int, group_size: int | None):
    """(codes (rows, cols) int8, step (rows, n_groups) float32, group of each column): for auditq.audit.evidence.

    A block of rows at a time, so the float64 scratch stays RTN_CHUNK_ELEMENTS whatever the tensor.
    """
    import numpy as np

    rows, cols = weight.shape
    size = cols if group_size is None else group_size
    code_type = torch.int8 if bits <= 8 else torch.int16
    codes_out, steps_out = [], []
    for start, stop in _row_blocks(weight):
        block = weight[start:stop]
        grouped, pad = to_groups(block.detach().double(), group_size)
        codes, delta = rtn_codes(grouped, bits)
        codes_out.append(from_groups(codes, block.shape, pad).to(code_type).numpy())
        steps_out.append(delta.reshape(stop - start, -1).float().numpy())
        del grouped, codes, delta
    codes_np = codes_out[0] if len(codes_out) == 1 else np.concatenate(codes_out)
    steps_np = steps_out[0] if len(steps_out) == 1 else np.concatenate(steps_out)
    return codes_np, steps_np, (torch.arange(cols) // size).numpy()


def quantizable_layers(model: torch.nn.Module, include_embeddings: bool, include_head: bool) -> list[LinearWeight]:
    """Weights RTN touches: every nn.Linear and Conv1D weight (lm_head optional), embeddings when asked.

    A head tied to the input embedding is left alone unless embeddings are quantized too (quantizing
    it would quantize the embedding). Embeddings are grouped along their hidden dimension (rows).
    Tied parameters are listed once (by their first name).
    """
    head = "none" if not include_head else ("all" if include_embeddings else "untied")
    linears = {lw.module: lw for lw in linear_layers(model, head=head)}
    chosen: list[LinearWeight] = []
    seen: set[int] = set()
    for name, module in model.named_modules():  # module order: a tied weight keeps its embedding's name
        if name in linears:
            entry = linears[name]
        elif include_embeddings and isinstance(module, torch.nn.Embedding):
            entry = LinearWeight(f"{name}.weight", name, type(module).__name__, module.weight)
        else:
            continue
        if id(entry.param) not in seen:
            seen.add(id(entry.param))
            chosen.append(entry)
    return chosen


def quantizable_weights(model: torch.nn.Module, include_embeddings: bool,
                        include_head: bool) -> dict[str, torch.nn.Parameter]:
    """name -> parameter of `quantizable_layers` (the stored tensors, whatever their layout)."""
    return {lw.name: lw.param for lw in quantizable_layers(model, include_embeddings, include_head)}


def _is_tied(model: torch.nn.Module) -> bool:
    return head_is_tied(model)


class RoundToNearest(Format):
    engine = "auditq-rtn"
    has_codes = True

    def __init__(self, spec: FormatSpec, options: RTNOptions) -> None:
        super().__init__(spec, options)
        self._skipped_tied_head = False
        self._compute: dict[str, object] = {}
        self._dtype_rounding: dict[str, dict[str, object]] = {}
        self._changes: dict[str, dict[str, object]] = {}

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        model = checkpoint.model
        layers = quantizable_layers(model, self.options.include_embeddings, self.options.include_head)
        require_covered(model, self.name, layers)
        self._skipped_tied_head = self.options.include_head and not self.options.include_embeddings and _is_tied(model)
        from auditq.formats.code_recorder import CodeRecorder

        recorder = CodeRecorder.for_context(ctx, self.name, (ctx.extra or {}).get("role"))
        role = str((ctx.extra or {}).get("role") or "model")
        targets = {lw.name: lw.param for lw in layers}
        with modified_weights(checkpoint, targets) as restore:  # originals come back from the safetensors files
            self._dtype_rounding[role] = _dtype_rounding(checkpoint, layers, self.options)
            change = self._quantize(layers, recorder, model)
            self._changes[role] = change.details()
            change.require_change(self.name, "every covered weight is already on this format's grid")
            dtype = str(layers[0].param.dtype).replace("torch.", "")
            self._compute = {"compute_dtype": dtype, "dequantize": f"integer codes × scale in {dtype}",
                             **layer_details(layers), **restore}
            yield TorchCausalLM(model, checkpoint.pad_token_id, checkpoint.eos_token_id,
                                batch_size=ctx.batch_size, max_batch_tokens=ctx.max_batch_tokens,
                                description=f"torch fake-quant {self.name}")

    def _quantize(self, layers: list[LinearWeight], recorder, model: torch.nn.Module) -> ChangeCount:
        """Quantize every layer in place, groups along its input dimension; record codes; count changes."""
        bits, group = self.options.bits, self.options.group_size
        change = ChangeCount(model_parameter_count(model))
        with torch.no_grad():
            for lw in layers:
                view = lw.out_in()  # (out, in): rows are output channels whatever the stored layout
                if recorder is not None:
                    recorder.add(lw.name, *rtn_codes_and_steps(view.cpu(), bits, group), transposed=lw.transposed)
                changed = 0
                for start, stop in _row_blocks(view):  # in place: no second copy of a 7B lm_head
                    quantized = rtn_quantize(view[start:stop], bits, group)
                    changed += count_changed(view[start:stop], quantized)
                    view[start:stop].copy_(quantized)
                change.add(lw.name, lw.numel, changed)
        return change

    def details(self):
        grouping = "per output channel" if self.options.group_size is None else f"groups of {self.options.group_size} input columns"
        info = {
            "engine": self.engine,
            "bits": self.options.bits,
            "grouping": grouping,
            "quantized": "nn.Linear and Conv1D weights" + (" and embeddings" if self.options.include_embeddings else "")
                         + ("" if self.options.include_head else " except lm_head"),
        }
        info.update(_merged_changes(self._changes))
        info.update(self._compute)
        rounding = {role: r for role, r in self._dtype_rounding.items() if r}
        if rounding:
            info["codes_changed_by_dtype_rounding"] = rounding
        if self._skipped_tied_head:
            info["note"] = "lm_head is tied to the input embedding and was left in full precision (add :emb to quantize both)"
        return info


def _merged_changes(changes: dict[str, dict[str, object]]) -> dict[str, object]:
    """The change counts for the row: one role's numbers at top level (the last applied), every role's under "changes"."""
    if not changes:
        return {}
    last = list(changes.values())[-1]
    return {**last, "changes": dict(changes)}


def _dtype_rounding(checkpoint, layers: list[LinearWeight], options: RTNOptions) -> dict[str, object]:
    """When the checkpoint's stored dtype differs from the compute dtype: codes that the cast changed."""
    files = tensor_files(getattr(checkpoint, "path", None)) if getattr(checkpoint, "weights_from_files", False) else {}
    if not files:
        return {}
    from auditq.checkpoint.safetensors_read import TORCH_DTYPES, TensorReader

    changed = total = 0
    stored_dtype = None
    for lw in layers:
        name, param = lw.name, lw.param
        if name not in files:
            continue
        with TensorReader(files[name]) as reader:  # plain reads: the file's pages stay out of this process
            entry = reader.entries[name]
            dtype = TORCH_DTYPES.get(entry.dtype)
            if dtype is None or dtype == param.dtype or tuple(entry.shape) != tuple(param.shape):
                return {}
            stored = torch.empty(entry.shape, dtype=dtype)
            reader.read_into(name, stored)
        stored_dtype = stored.dtype
        as_out_in = stored.t() if lw.transposed else stored
        changed += codes_changed_by_cast(as_out_in, lw.out_in(), options.bits, options.group_size)
        total += stored.numel()
        del stored, as_out_in
    if stored_dtype is None:
        return {}
    return {"changed": changed, "total": total, "stored_dtype": str(stored_dtype).replace("torch.", ""),
            "compute_dtype": str(layers[0].param.dtype).replace("torch.", "")}
