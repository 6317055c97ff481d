"""What every command module shares: the consoles, option help texts, list splitting, --device/--dtype parsing,
torch threads. Typer-free and torch-free at import."""

from __future__ import annotations

import os
from typing import Optional

from rich.console import Console

from auditq.report.progress import RichEvents  # noqa: F401 - re-exported: the progress bars every command uses

err = Console(stderr=True)
out = Console()

DEFAULT_FORMATS = "fp,rtn8,rtn4"
DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N."
DTYPE_HELP = ("auto (on CUDA the checkpoint's dtype; on CPU float32 unless it would not fit, then bfloat16), "
              "float32, bfloat16 or float16.")
DEVICE_MAP_HELP = "auto: spread a model larger than one GPU over every visible GPU (accelerate)."
EXECUTOR_HELP = "Who runs the jobs: local (this process) or ray (a Ray cluster; pip install 'auditq[ray]')."
RAY_ADDRESS_HELP = ("With --executor ray: auto (RAY_ADDRESS or the `ray start` cluster here), ray://HOST:PORT, "
                    "HOST:PORT, or local (start a Ray cluster in this process with this machine's CPUs).")
RAY_TIMEOUT_HELP = "With --executor ray: cancel tasks still running after this many seconds (rows UNKNOWN)."
MAX_BATCH_TOKENS_HELP = "Padded tokens per forward pass (rows × longest sequence); sequences are batched longest first."


def split_list(values: list[str]) -> tuple[str, ...]:
    """Repeatable, comma-separated options ("-f fp,rtn4 -f gguf:q4_0") as one tuple."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def compute_request(device: str, dtype: str, device_map: Optional[str]):
    """--device/--dtype/--device-map parsed now (exit 2 on a typo), resolved before weights are read."""
    from auditq.checkpoint.placement_flags import ComputeRequest, parse_device, parse_device_map, parse_dtype

    return ComputeRequest(device=parse_device(device), dtype=parse_dtype(dtype), device_map=parse_device_map(device_map))


def set_threads(threads: Optional[int]) -> None:
    import torch

    torch.set_num_threads(threads or max(1, min(4, os.cpu_count() or 1)))
