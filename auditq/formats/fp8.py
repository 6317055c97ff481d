"""Weight-only FP8 (E4M3) as vLLM and hosted endpoints serve it: ``fp8`` and ``fp8:block128``.

Every nn.Linear weight (the lm_head included unless it is tied to the input embedding) is
stored as ``torch.float8_e4m3fn`` codes times a float32 scale and dequantized back to the
model's dtype; activations stay in the model's dtype (W8A16, like vLLM's weight-only FP8 /
Marlin path).

- ``fp8``: one scale per output channel, ``s = max|w_row| / 448`` (448 = E4M3FN's largest finite).
- ``fp8:block128``: one scale per 128 x 128 weight block (the DeepSeek-V3 / vLLM block layout),
  ragged edge blocks use their own max.

Rounding: torch's cast to float8_e4m3fn, round-to-nearest-even. Saturation: w/s is clamped to
[-448, 448] before the cast (so values that round above the top code saturate instead of
becoming NaN, whatever the backend's cast does). An all-zero row/block gets scale 1 and codes 0.
Bound (tested): |w - ŵ| <= max(|w| * 2^-4, s * 2^-10) per element: 3 mantissa bits give half an
ulp of 2^-4 relative for normals, and the subnormal step is 2^-9 * s.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from auditq.backends.torch_lm import TorchCausalLM
from auditq.checkpoint.restore import modified_weights
from auditq.formats.base import Format, FormatContext, FormatSpec
from auditq.formats.options import FP8Options
from auditq.formats.rtn import quantizable_weights

E4M3_MAX = 448.0
FP8_DTYPE = torch.float8_e4m3fn


def _fp8_codes(scaled: torch.Tensor) -> torch.Tensor:
    return scaled.clamp(-E4M3_MAX, E4M3_MAX).to(FP8_DTYPE)


def fp8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E4M3 codes and per-output-channel float32 scales (shape (rows, 1)) of a 2-D weight."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1, keepdim=True)
    scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
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
    """Round-trip a 2-D weight through E4M3 (per channel, or per block x block tile) to its dtype."""
    if weight.dim() != 2:
        raise ValueError(f"fp8 expects a 2-D weight, got shape {tuple(weight.shape)}")
    if block is None:
        codes, scale = fp8_per_channel(weight)
        return (codes.float() * scale).to(weight.dtype)
    codes, scale = fp8_blockwise(weight, block)
    rows, cols = weight.shape
    full = scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:rows, :cols]
    return (codes.float() * full).to(weight.dtype)


class FP8WeightOnly(Format):
    """``fp8`` (per output channel) or ``fp8:blockN`` (N x N tiles, e.g. block128)."""

    engine = "auditq-fp8"

    def __init__(self, spec: FormatSpec, options: FP8Options) -> None:
        super().__init__(spec, options)
        self.block = options.block
        self._count = 0

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        model = checkpoint.model
        targets = quantizable_weights(model, include_embeddings=False, include_head=True)
        self._count = len(targets)
        with modified_weights(checkpoint, targets):  # originals come back from the safetensors files
            with torch.no_grad():
                for param in targets.values():
                    param.copy_(fp8_fake_quantize(param, self.block))
            yield TorchCausalLM(model, checkpoint.pad_token_id, checkpoint.eos_token_id,
                                batch_size=ctx.batch_size, description=f"torch fake-quant {self.name}")

    def details(self):
        return {
            "engine": self.engine, "engine_version": torch.__version__,
            "dtype": "float8_e4m3fn (max 448)", "bits": 8,
            "scales": "per output channel" if self.block is None else f"per {self.block}x{self.block} block",
            "rounding": "round-to-nearest-even (torch cast)", "saturation": "clamp to ±448 before the cast",
            "quantized": "nn.Linear weights, weight-only (activations in the model dtype)",
            **({"n_weights": self._count} if self._count else {}),
        }
