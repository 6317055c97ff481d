"""Compatibility names: the unlearning code now lives in one-job modules beside this one.

config.py (UnlearnConfig, StepLog, UnlearnResult), batching.py (encoding, padding, the streams), losses.py
(GA / NPO / GDR / KLR), masks.py (linear_weights, masks, Masker, snapshot), projection.py (the int4 RTN-cell
projection of the demo's "fragile" model), loop.py (`unlearn`). Import from those; this module only keeps
`from auditq.unlearning.unlearn import ...` working for code written before the split (remediate/saliency.py).
"""

from __future__ import annotations

from auditq.unlearning.batching import Batch, batches, encode_texts, focused_batches, make_batch
from auditq.unlearning.config import FORGET_LOSSES, RETAIN_LOSSES, StepLog, UnlearnConfig, UnlearnResult
from auditq.unlearning.loop import unlearn
from auditq.unlearning.losses import (forget_term, ga_loss, gdr_loss, klr_loss, npo_loss, retain_term,
                                      sequence_logprobs, token_nll)
from auditq.unlearning.masks import Masker, linear_weight_mask, linear_weights, snapshot
from auditq.unlearning.projection import project_into_rtn_cells, rtn_cell_projection

__all__ = [
    "Batch", "FORGET_LOSSES", "Masker", "RETAIN_LOSSES", "StepLog", "UnlearnConfig", "UnlearnResult", "batches",
    "encode_texts", "focused_batches", "forget_term", "ga_loss", "gdr_loss", "klr_loss", "linear_weight_mask",
    "linear_weights", "make_batch", "npo_loss", "project_into_rtn_cells", "retain_term", "rtn_cell_projection",
    "sequence_logprobs", "snapshot", "token_nll", "unlearn",
]
