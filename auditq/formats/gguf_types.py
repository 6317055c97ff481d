"""The `gguf:<type>` names auditq accepts and what llama.cpp's quantizer makes of each, as plain data.

Kept apart from auditq.formats.gguf (which imports torch and llama.cpp) so the format-option parser
(auditq.formats.options) can check a `gguf:` spec before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantType:
    """One `gguf:<name>` format: llama.cpp's ftype constant and the type most weights should get."""

    name: str
    ftype_const: str | None  # None: the F32 conversion itself, no quantizer call
    nominal: str
    k_quant: bool


QUANT_TYPES: dict[str, QuantType] = {q.name: q for q in (
    QuantType("f32", None, "F32", False),
    QuantType("f16", "LLAMA_FTYPE_MOSTLY_F16", "F16", False),
    QuantType("bf16", "LLAMA_FTYPE_MOSTLY_BF16", "BF16", False),
    QuantType("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", "Q8_0", False),
    QuantType("q6_k", "LLAMA_FTYPE_MOSTLY_Q6_K", "Q6_K", True),
    QuantType("q5_k_m", "LLAMA_FTYPE_MOSTLY_Q5_K_M", "Q5_K", True),
    QuantType("q5_k_s", "LLAMA_FTYPE_MOSTLY_Q5_K_S", "Q5_K", True),
    QuantType("q5_1", "LLAMA_FTYPE_MOSTLY_Q5_1", "Q5_1", False),
    QuantType("q5_0", "LLAMA_FTYPE_MOSTLY_Q5_0", "Q5_0", False),
    QuantType("q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q4_K", True),
    QuantType("q4_k_s", "LLAMA_FTYPE_MOSTLY_Q4_K_S", "Q4_K", True),
    QuantType("q4_1", "LLAMA_FTYPE_MOSTLY_Q4_1", "Q4_1", False),
    QuantType("q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0", "Q4_0", False),
    QuantType("q3_k_m", "LLAMA_FTYPE_MOSTLY_Q3_K_M", "Q3_K", True),
    QuantType("q2_k", "LLAMA_FTYPE_MOSTLY_Q2_K", "Q2_K", True),
)}
