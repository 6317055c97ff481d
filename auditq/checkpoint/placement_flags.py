"""--device / --dtype / --device-map as the user typed them, parsed without importing torch.

The CLI parses these flags before its heavy imports (auditq.validate.inputs runs first); auditq.checkpoint.placement
resolves them against the machine once torch is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditq.errors import InputError

DTYPE_NAMES = ("float32", "bfloat16", "float16")
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


@dataclass(frozen=True)
class ComputeRequest:
    """The user's --device / --dtype / --device-map, unresolved."""

    device: str = "auto"
    dtype: str = "auto"
    device_map: str | None = None


def parse_device(text: str) -> str:
    value = (text or "auto").strip().lower()
    if value in ("auto", "cpu", "cuda"):
        return value
    if value.startswith("cuda:") and value[5:].isdigit():
        return value
    raise InputError(f"--device {text!r}: expected auto, cpu, cuda or cuda:N")


def parse_dtype(text: str) -> str:
    value = _ALIASES.get((text or "auto").strip().lower(), (text or "auto").strip().lower())
    if value == "auto" or value in DTYPE_NAMES:
        return value
    raise InputError(f"--dtype {text!r}: expected auto, float32, bfloat16 or float16")


def parse_device_map(text: str | None) -> str | None:
    if text is None or text == "":
        return None
    if text.strip().lower() != "auto":
        raise InputError(f"--device-map {text!r}: only 'auto' is supported (accelerate spreads layers over every visible GPU)")
    return "auto"
