"""`auditq remediate`: re-unlearn from the original model so that the result stays unlearned once quantized.

- `auditq.remediate.saliency`  SURE's saliency ‖Σ ∇ L_forget‖ at θ_o per module (or output row), the
                               percentile threshold γ and the mask m = s ≥ γ
- `auditq.remediate.sure`      presets, the plan, the full-precision monitor and the masked unlearning run
                               with its measured stop rule
- `auditq.remediate.stop`      the memorisation half of the stop rule: the re-check's own bootstrap test
- `auditq.remediate.output`    --out checks, staging dir + rename, checkpoint writing, bit-for-bit diffs
- `auditq.remediate.command`   the CLI flow: validate, plan (--dry-run), train, stage, re-check, record, rename
"""

from auditq.remediate.saliency import Saliency, SaliencyMask, compute_saliency, percentile_threshold, saliency_mask
from auditq.remediate.sure import PRESETS, Measurement, RemediationPlan, RemediationResult, plan_mask, remediate

__all__ = ["PRESETS", "Measurement", "RemediationPlan", "RemediationResult", "Saliency", "SaliencyMask",
           "compute_saliency", "percentile_threshold", "plan_mask", "remediate", "saliency_mask"]
