"""Architectures on which GPTQModel 7.6.0 gives no row auditq can trust, refused before the engine runs.

Found by the architecture × format conformance matrix (tests/formats/test_conformance_matrix.py, 2026-12-03):
a refusal is an honest UNKNOWN row with the reason; a row from an engine that mis-quantizes, or a process the
engine ends without a word, would be neither. Lift an entry only when the matrix measures that cell.
"""

from __future__ import annotations

from auditq.errors import MeasurementError

#: (method, model_type) -> why the cell is refused
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("gptq", "gpt_neox"): "GPTQModel 7.6.0 looks for lm_head.weight and GPT-NeoX's head is embed_out",
    ("awq", "gpt_neox"): "GPTQModel 7.6.0 looks for lm_head.weight and GPT-NeoX's head is embed_out",
    ("gptq", "phi3"): "GPTQModel 7.6.0's dequantized Phi-3 weights (fused qkv_proj / gate_up_proj) are not on "
                      "its own 4-bit grid, so the row would not measure a 4-bit model",
    ("awq", "phi3"): "GPTQModel 7.6.0's AWQ ends the whole process on Phi-3 (fused qkv_proj / gate_up_proj) "
                     "without an error",
}


def model_type_of(checkpoint) -> str | None:
    """The checkpoint's config.json model_type (already parsed at load; no weights read)."""
    config = getattr(checkpoint, "config", None)
    return getattr(config, "model_type", None) or (config.get("model_type") if isinstance(config, dict) else None)


def refuse_unsupported(method: str, checkpoint, format_name: str) -> None:
    """Raise the one-line MeasurementError (an UNKNOWN row) for an architecture this engine cannot serve."""
    model_type = model_type_of(checkpoint)
    why = UNSUPPORTED.get((method, model_type or ""))
    if why:
        raise MeasurementError(f"{format_name} is not available for {model_type} models: {why}")
