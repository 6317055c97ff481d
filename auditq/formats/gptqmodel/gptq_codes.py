"""Integer codes of a saved GPTQ checkpoint, for auditq.audit.evidence (weight-space evidence).

GPTQ stores, per quantized nn.Linear, ``qweight`` (codes packed along the input dimension,
shape (in / pack, out)), ``scales`` (n_groups, out) and ``g_idx`` (the group of each input
column). Codes are unpacked with GPTQModel's own ``unpack_rows`` (so 3-bit and planar layouts
are read as GPTQModel reads them) and recorded in HF layout (out, in) with the per-group
scale as the step. Symmetric GPTQ's zero point is a constant, so equal codes with equal scales
mean equal dequantized weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from auditq.regular_file import read_text, require_regular


def record_gptq_codes(checkpoint_dir: Path, recorder) -> int:
    """Record every quantized layer of a GPTQ checkpoint dir; returns the number of tensors recorded."""
    if recorder is None:
        return 0
    import torch
    from gptqmodel.utils.model_dequant import unpack_rows
    from safetensors import safe_open

    qc = json.loads(read_text(Path(checkpoint_dir) / "config.json")).get("quantization_config") or {}
    bits = int(qc.get("bits", 4))
    fmt = str(qc.get("checkpoint_format") or qc.get("format") or "").lower()
    planar = fmt == "gptq_p"
    count = 0
    for file in sorted(Path(checkpoint_dir).glob("*.safetensors")):
        with safe_open(str(require_regular(file)), framework="pt") as reader:
            keys = set(reader.keys())
            for key in sorted(k for k in keys if k.endswith(".qweight")):
                prefix = key[: -len(".qweight")]
                if f"{prefix}.scales" not in keys or f"{prefix}.g_idx" not in keys:
                    continue
                codes = unpack_rows(reader.get_tensor(key), bits, planar=planar)  # (in, out)
                scales = reader.get_tensor(f"{prefix}.scales").to(torch.float32)  # (groups, out)
                g_idx = reader.get_tensor(f"{prefix}.g_idx").to(torch.long)  # (in,)
                codes = codes[: g_idx.numel()]
                recorder.add(f"{prefix}.weight", codes.t().contiguous().to(torch.int16).numpy(),
                             scales.t().contiguous().numpy(), g_idx.numpy())
                count += 1
    return count
