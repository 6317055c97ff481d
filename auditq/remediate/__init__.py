"""`auditq remediate`: re-unlearn from the original model so that the result stays unlearned once quantized.

- `auditq.remediate.saliency`  SURE's saliency ‖Σ ∇ L_forget‖ at θ_o per module (or output row), the
                               percentile threshold γ and the mask m = s ≥ γ
- `auditq.remediate.sure`      presets, the plan, the full-precision monitor and the masked unlearning run
                               with its measured stop rule
- `auditq.remediate.stop`      the memorisation half of the stop rule: the re-check's own bootstrap test
- `auditq.remediate.output`    --out checks, staging dir + rename, checkpoint writing, bit-for-bit diffs
- `auditq.remediate.validate`  the inputs checked before torch is imported (exit 2 in well under 2 s), then
                               what needs the model classes, before any weights load
- `auditq.remediate.command`   the CLI flow: validate, plan (--dry-run), train, stage, re-check, record, rename
"""

import importlib

#: name -> module; imported on first use, so `auditq.remediate.command` / `.validate` import no torch
_EXPORTS = {
    **dict.fromkeys(("Saliency", "SaliencyMask", "compute_saliency", "percentile_threshold", "saliency_mask"),
                    "auditq.remediate.saliency"),
    **dict.fromkeys(("PRESETS", "Measurement", "RemediationPlan", "RemediationResult", "plan_mask", "remediate"),
                    "auditq.remediate.sure"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'auditq.remediate' has no attribute {name!r}")
