"""AWQ through GPTQModel's AWQ path (GEMM packing, the layout AutoAWQ, vLLM and TGI load).

Format strings (family ``awq``): ``awq4`` (AWQ is 4-bit only here) with options

- ``:gG``      group size G (default 128, or the largest power of two below it that divides
               every quantized input width);
- ``:dequant`` score exactly dequantized weights (AWQ's own ``dequantize_gemm``: the generic
               GPTQ dequantizer ignores AWQ's interleaved packing order) in float32 instead of
               loading the saved checkpoint back through GPTQModel's AWQ kernel.

Quantization: ``QuantizeConfig(bits=4, group_size=G, method="awq", format="gemm", sym=False)``
(zero point, as AutoAWQ does), calibration ``ctx.calibration_texts``. On CPU GPTQModel's AWQ
path needs fp16/bf16: the model is quantized in float16 with ``backend=BACKEND.AWQ_TORCH``;
the saved checkpoint keeps its unquantized tensors (embeddings, norms, lm_head) in float16
too, as deployed. Scoring on CPU goes through ``AwqTorchLinear``, which computes its matmuls
in float16; the rest of the model runs in float32. On CUDA: GPTQModel's automatic kernel in
float16. Everything else (scratch dirs, clean-up, BackendUnavailable) is as in
auditq.formats.gptq.
"""

from __future__ import annotations

from typing import Any

import torch

from auditq.formats.base import Format, FormatSpec
from auditq.formats.gptqmodel.engine_format import GPTQModelFormat
from auditq.formats.gptqmodel.quantize import QuantizeRequest
from auditq.formats.options import GPTQOptions

__all__ = ["AWQFormat"]


class AWQFormat(GPTQModelFormat, Format):
    """``awq4[:gG][:dequant]``: GPTQModel AWQ, GEMM packing, zero point, lm_head and embeddings unquantized."""

    engine = "gptqmodel"
    method = "awq"

    def __init__(self, spec: FormatSpec, options: GPTQOptions) -> None:
        super().__init__(spec, options)
        self._runs: dict[str, dict[str, Any]] = {}

    def _request(self, group_size: int, device: str, seed: int) -> QuantizeRequest:
        return QuantizeRequest(method="awq", bits=self.options.bits, group_size=group_size, sym=False,
                               device=device, dtype=torch.float16, seed=seed)

    def details(self) -> dict[str, Any]:
        info = super().details()
        info.update(packing="gemm", zero_point=True, act_order=False)
        return info
