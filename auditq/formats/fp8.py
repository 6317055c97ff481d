"""Weight-only FP8 (E4M3) as each engine does it: ``fp8`` (vLLM), ``fp8:channel`` (llm-compressor), ``fp8:blockN``.

Weights are stored as ``torch.float8_e4m3fn`` codes times a float32 scale and dequantized back to the
model's dtype; activations stay in the model's dtype (W8A16, vLLM's weight-only / Marlin path on
GPUs without FP8 hardware; on compute capability >= 8.9 vLLM also quantizes activations, which is
not mirrored here). Sources read (docs/formats.md cites them):

- ``fp8`` / ``fp8:tensor`` = vLLM online fp8 (``--quantization fp8`` on a bf16/fp16 checkpoint):
  ``Fp8LinearMethod.process_weights_after_loading`` calls ``ops.scaled_fp8_quant(layer.weight,
  scale=None)`` on the layer's whole weight: ONE scale per tensor, ``s = amax / 448`` in float32,
  codes ``= e4m3(clamp(w * (1/s), ±448))`` (csrc/quantization/fp8/common.cuh: the kernel multiplies
  by the inverted scale; the cast rounds to nearest even). vLLM loads q/k/v into one fused
  ``QKVParallelLinear`` and gate/up into one ``MergedColumnParallelLinear`` before quantizing, so
  those siblings share one scale (the max over the fused weight); ``FUSED`` is that packing (vLLM's
  ``packed_modules_mapping`` of Llama-family models). GPT-2's c_attn and Phi-3's qkv_proj /
  gate_up_proj are one tensor already. The lm_head (``ParallelLMHead``, not a ``LinearBase``) stays
  in full precision. With tensor parallelism each rank scales its own shard: auditq mirrors TP=1.
- ``fp8:channel`` = llm-compressor's ``FP8_DYNAMIC`` preset (compressed-tensors: weights float 8-bit,
  strategy CHANNEL, symmetric): ``s = max(amax_row / 448, float32 eps)`` per output channel,
  ``codes = e4m3(clamp(w / s, ±448))``; llm-compressor's recipes ignore ``lm_head``, so does this.
- ``fp8:blockN`` = one scale per N x N weight tile (the DeepSeek-V3 serialized layout); the lm_head is
  quantized too unless it is tied to the input embedding.

Every scheme covers nn.Linear and Conv1D weights (auditq.formats.linear_layers; a Conv1D's output
channel is a column of its stored weight). An all-zero tensor/tile gets scale 1 (codes 0). A model
whose covered weights fp8 leaves unchanged is not measured (MeasurementError, see auditq.formats.rtn).
Bound (tested): |w - ŵ| <= max(|w| * 2^-4, s * 2^-10) per element.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from auditq.backends.torch_lm import TorchCausalLM
from auditq.checkpoint.restore import modified_weights
from auditq.formats.base import Format, FormatContext, FormatSpec
from auditq.formats.linear_layers import (ChangeCount, LinearWeight, count_changed, layer_details, linear_layers,
                                          model_parameter_count, require_covered)
from auditq.formats.options import FP8Options

E4M3_MAX = 448.0
FP8_DTYPE = torch.float8_e4m3fn
#: vLLM's packing of separate HF projections into one quantized layer (packed_modules_mapping of llama.py, qwen2.py ...)
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
SCHEMES = {"tensor": "vLLM online fp8: one scale per tensor (q/k/v and gate/up fused), lm_head unquantized",
           "channel": "llm-compressor FP8_DYNAMIC: one scale per output channel, lm_head unquantized",
           "block": "one scale per NxN block"}


def _fp8_codes(scaled: torch.Tensor) -> torch.Tensor:
    return scaled.clamp(-E4M3_MAX, E4M3_MAX).to(FP8_DTYPE)


def fp8_per_tensor(weights: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """vLLM's scaled_fp8_quant(w, scale=None) over the concatenation of `weights` (a fused layer): codes, scale."""
    amax = max(float(w.detach().float().abs().max()) for w in weights)
    scale = torch.tensor(amax / E4M3_MAX if amax > 0 else 1.0, dtype=torch.float32)
    inverse = 1.0 / scale
    return [_fp8_codes(w.detach().float() * inverse) for w in weights], scale


def fp8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E4M3 codes and per-output-channel float32 scales (shape (rows, 1)) of an (out, in) weight."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1, keepdim=True) / E4M3_MAX).clamp(min=torch.finfo(torch.float32).eps)
    return _fp8_codes(w / scale), scale


def fp8_blockwise(weight: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """E4M3 codes and one float32 scale per block x block tile (scales shape (ceil(r/b), ceil(c/b)))."""
    w = weight.detach().float()
    rows, cols = w.shape
    pr, pc = (-rows) % block, (-cols) % block
    padded = torch.nn.functional.pad(w, (0, pc, 0, pr))  # zero padding never raises a tile's max
    tiles = padded.reshape((rows + pr) // block, block, (cols + pc) // block, block)
    amax = tiles.abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    full = scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:rows, :cols]
    return _fp8_codes(w / full), scale


def fp8_fake_quantize(weight: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """Round-trip an (out, in) weight through E4M3 (per channel, or per block x block tile) to its dtype."""
    if weight.dim() != 2:
        raise ValueError(f"fp8 expects a 2-D weight, got shape {tuple(weight.shape)}")
    if block is None:
        codes, scale = fp8_per_channel(weight)
        return (codes.float() * scale).to(weight.dtype)
    codes, scale = fp8_blockwise(weight, block)
    rows, cols = weight.shape
    full = scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:rows, :cols]
    return (codes.float() * full).to(weight.dtype)


def fused_groups(layers: list[LinearWeight]) -> list[list[LinearWeight]]:
    """Layers grouped as vLLM fuses them (siblings q/k/v, gate/up under one parent), others alone, in order."""
    groups: list[list[LinearWeight]] = []
    by_key: dict[tuple[str, str], list[LinearWeight]] = {}
    for layer in layers:
        parent, _, leaf = layer.module.rpartition(".")
        fused = next((f for f, parts in FUSED.items() if leaf in parts), None)
        if fused is None:
            groups.append([layer])
            continue
        if (parent, fused) not in by_key:
            by_key[(parent, fused)] = []
            groups.append(by_key[(parent, fused)])
        by_key[(parent, fused)].append(layer)
    return groups


class FP8WeightOnly(Format):
    """``fp8`` (vLLM, per tensor), ``fp8:channel`` (llm-compressor, per output channel) or ``fp8:blockN``."""

    engine = "auditq-fp8"

    def __init__(self, spec: FormatSpec, options: FP8Options) -> None:
        super().__init__(spec, options)
        self.block = options.block
        self._count = 0
        self._changes: dict[str, dict[str, object]] = {}
        self._layers: dict[str, object] = {}

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        model = checkpoint.model
        layers = linear_layers(model, head="untied" if self.options.scheme == "block" else "none")
        require_covered(model, self.name, layers)
        self._count = len(layers)
        role = str((ctx.extra or {}).get("role") or "model")
        with modified_weights(checkpoint, {lw.name: lw.param for lw in layers}) as restore:
            change = self._quantize(layers, model_parameter_count(model))
            self._changes[role] = change.details()
            change.require_change(self.name, "every covered weight is already an fp8 value at its scale")
            self._layers = {**layer_details(layers), **restore}
            yield TorchCausalLM(model, checkpoint.pad_token_id, checkpoint.eos_token_id,
                                batch_size=ctx.batch_size, description=f"torch fake-quant {self.name}")

    def _quantize(self, layers: list[LinearWeight], total: int) -> ChangeCount:
        change = ChangeCount(total)
        with torch.no_grad():
            if self.options.scheme == "tensor":
                for group in fused_groups(layers):
                    codes, scale = fp8_per_tensor([lw.param for lw in group])
                    for lw, c in zip(group, codes):
                        self._write(lw, (c.float() * scale).to(lw.param.dtype), change)
            else:
                for lw in layers:
                    block = self.block if self.options.scheme == "block" else None
                    self._write(lw, fp8_fake_quantize(lw.out_in(), block), change, out_in=True)
        return change

    @staticmethod
    def _write(lw: LinearWeight, new: torch.Tensor, change: ChangeCount, out_in: bool = False) -> None:
        target = lw.out_in() if out_in else lw.param.data
        change.add(lw.name, lw.numel, count_changed(target, new))
        target.copy_(new)

    def details(self):
        scheme = self.options.scheme
        scales = {"tensor": "per tensor (q/k/v and gate/up fused share one, as vLLM)",
                  "channel": "per output channel (llm-compressor FP8_DYNAMIC)",
                  "block": f"per {self.block}x{self.block} block"}[scheme]
        info = {
            "engine": self.engine, "engine_version": torch.__version__, "scheme": scheme,
            "mirrors": SCHEMES[scheme].replace("NxN", f"{self.block}x{self.block}"),
            "dtype": "float8_e4m3fn (max 448)", "bits": 8, "scales": scales,
            "rounding": "round-to-nearest-even (torch cast)", "saturation": "clamp to ±448 before the cast",
            "quantized": "nn.Linear and Conv1D weights" + ("" if scheme == "block" else " except lm_head")
                         + ", weight-only (activations in the model dtype)",
            **({"n_weights": self._count} if self._count else {}), **self._layers,
        }
        if self._changes:
            info.update({**list(self._changes.values())[-1], "changes": dict(self._changes)})
        return info
