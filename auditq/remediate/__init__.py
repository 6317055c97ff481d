"""`auditq remediate`: re-unlearn from the original model so that the result stays unlearned once quantized.

- `auditq.remediate.saliency`  SURE's saliency ‖Σ ∇ L_forget‖ at θ_o per module (or output row), the
                               percentile threshold γ and the mask m = s ≥ γ
- `auditq.remediate.sure`      the masked unlearning run (its parts' public names are importable from it too)
- `auditq.remediate.plan`      presets, the plan, the texts it trains on
- `auditq.remediate.monitor`   the full-precision measurements (KnowMem, VerbMem, Min-K% AUC, PrivLeak estimate)
- `auditq.remediate.records`   Measurement, RemediationResult
- `auditq.remediate.stop_rule` the measured stop rule and the focus on what is still memorised
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
