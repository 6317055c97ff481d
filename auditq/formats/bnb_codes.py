"""Integer codes of a bitsandbytes-quantized model, for auditq.audit.evidence (weight-space evidence).

- 4-bit (NF4/FP4, ``Linear4bit``): two 4-bit indices into a 16-entry code table per byte,
  blocks of ``blocksize`` consecutive weights (row-major) sharing one absmax (dequantized
  first when double quantization nests it). NF4/FP4 levels are not evenly spaced; the step
  reported is absmax × (table range / 15), the mean spacing between adjacent levels.
- 8-bit (LLM.int8, ``Linear8bitLt``): int8 codes ``CB`` per output row with row absmax ``SCB``;
  step = SCB / 127. (Outlier columns are recomputed in float16 at run time from the same codes.)
"""

from __future__ import annotations

import numpy as np
import torch


def _absmax(state) -> torch.Tensor:
    if getattr(state, "nested", False):
        import bitsandbytes.functional as F

        return (F.dequantize_blockwise(state.absmax, state.state2) + state.offset).float()
    return state.absmax.float()


def _record_4bit(name: str, module, recorder) -> None:
    state = module.weight.quant_state
    rows, cols = (int(d) for d in state.shape)
    n, block = rows * cols, int(state.blocksize)
    packed = module.weight.data.reshape(-1).to(device="cpu", dtype=torch.uint8)
    codes = torch.stack([packed >> 4, packed & 0x0F], dim=-1).reshape(-1)[:n].to(torch.int8)
    spacing = float(state.code.max() - state.code.min()) / 15.0
    step = (_absmax(state).cpu() * spacing).numpy()
    codes = codes.reshape(rows, cols).numpy()
    if cols % block == 0:
        recorder.add(name, codes, step.reshape(rows, cols // block), np.arange(cols) // block)
    else:
        recorder.add(name, codes, np.repeat(step, block)[:n].reshape(rows, cols))


def _record_8bit(name: str, module, recorder) -> None:
    weight, state = module.weight, getattr(module, "state", None)
    # after the first forward bitsandbytes moves CB/SCB from the parameter to the layer's MatmulLtState
    codes = next((c for c in (getattr(weight, "CB", None), getattr(state, "CB", None)) if c is not None), weight.data)
    scb = next((s for s in (getattr(weight, "SCB", None), getattr(state, "SCB", None)) if s is not None), None)
    step = None if scb is None else (scb.float().cpu() / 127.0).reshape(-1, 1).numpy()
    recorder.add(name, codes.to(torch.int8).cpu().numpy(), step,
                 None if step is None else np.zeros(codes.shape[1], dtype=np.int64))


def record_bnb_codes(model: torch.nn.Module, recorder) -> int:
    """Record every Linear4bit / Linear8bitLt weight of a loaded model; returns how many."""
    if recorder is None:
        return 0
    count = 0
    for name, module in model.named_modules():
        kind = type(module).__name__
        if kind == "Linear4bit" and getattr(module.weight, "quant_state", None) is not None:
            _record_4bit(f"{name}.weight", module, recorder)
        elif kind == "Linear8bitLt":
            _record_8bit(f"{name}.weight", module, recorder)
        else:
            continue
        count += 1
    return count
