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


def cuda_missing(device: str) -> str | None:
    """Why `--device cuda[:N]` cannot work here, found without importing torch (a refusal in well under
    2 s instead of ~15 s of imports), or None when it may: CUDA_VISIBLE_DEVICES hides every GPU, the
    installed torch is a CPU-only build (its version.py), or (Linux, CUDA build) no NVIDIA driver device."""
    import importlib.util
    import os
    import re
    import sys
    from pathlib import Path

    if not device.startswith("cuda"):
        return None
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES hides every GPU"
    spec = importlib.util.find_spec("torch")  # locates the package without importing it
    if spec is None or not spec.origin:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    build = dict(re.findall(r"^(__version__|cuda|hip)\s*(?::[^=]+)?=\s*(.+?)\s*$", text, re.MULTILINE))
    version = build.get("__version__", "?").strip("'\"")
    if build.get("cuda", "None") == "None" and build.get("hip", "None") == "None":
        return f"torch {version} is a CPU-only build"
    nvidia = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version")
    if build.get("hip", "None") == "None" and sys.platform.startswith("linux") and not any(map(os.path.exists, nvidia)):
        return f"no NVIDIA driver on this machine (no /dev/nvidia*; torch {version})"
    return None


def check_device_available(device: str) -> None:
    """InputError (exit 2) for a --device cuda that cannot work, before torch is imported."""
    reason = cuda_missing(device)
    if reason:
        raise InputError(f"--device {device}: no CUDA device is visible to torch ({reason}); use --device cpu")
