"""Where and in what precision the models run: --device, --dtype, --device-map, and the memory check.

Rules (`auto`): CUDA when torch sees one, else the CPU. On CUDA the checkpoint's own dtype; on the
CPU float32 unless one model would not fit in the available memory, then bfloat16 (said in one
line). Only one model is resident at a time (auditq.audit.executor), so the estimate is for one model:
~1.3 × its bytes in the compute dtype + a fixed working allowance, plus on the CPU what the process's
imports hold. An audit that cannot fit is
refused before any weights are read (exit 2), naming the flag that would help.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from auditq.checkpoint.placement_flags import ComputeRequest, parse_device, parse_device_map, parse_dtype  # noqa: F401
from auditq.checkpoint.safetensors_read import TORCH_DTYPES
from auditq.errors import InputError
from auditq.regular_file import read_text

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GIB = 1 << 30
#: resident bytes per model byte (the model, one tensor being rewritten, allocator slack)
MODEL_FACTOR = 1.3
#: activations, logits chunks, KV cache and the tokenizer, on top of the model
WORKING_BYTES = GIB // 2
#: what the process holds before a model is loaded, on the CPU only (torch, transformers, scipy, sklearn,
#: rouge-score and auditq: 0.51 GiB RSS measured with `auditq check`'s imports, 2026-12-02); the estimate
#: left it out and came out 0.14 GiB (57M shape) to 0.4 GiB (0.5B shape) below the measured peak
CPU_IMPORT_BYTES = 11 * GIB // 20


@dataclass(frozen=True)
class Placement:
    """The resolved device and dtype every model of the audit is loaded with."""

    device: str              # "cpu", "cuda:0", ... ("cuda:0" is the first device of a device map)
    dtype: torch.dtype
    device_map: str | None = None
    needs_bytes: int = 0
    available_bytes: int | None = None
    note: str | None = None  # the one line said when auto picked bfloat16 on the CPU

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def row_fields(self) -> dict[str, str]:
        """What every report row records about where it ran."""
        fields = {"device": "auto (" + self.device + ")" if self.device_map else self.device,
                  "dtype": self.dtype_name}
        if self.device_map:
            fields["device_map"] = self.device_map
        return fields

    def estimate_line(self) -> str:
        avail = "unknown" if self.available_bytes is None else f"{self.available_bytes / GIB:.1f} GiB"
        where = f"device map {self.device_map}" if self.device_map else self.device
        return f"memory: one model resident at a time, needs ~{self.needs_bytes / GIB:.1f} GiB " \
               f"({self.dtype_name} on {where}), {avail} available"


# --------------------------------------------------------------------------- what a checkpoint holds


def safetensors_header(path: Path) -> dict:
    """name -> {"dtype", "shape"} of one .safetensors file, without reading tensor data.

    Read through auditq.checkpoint.safetensors_header's checked reader (a broken header is exit 2, never a crash).
    """
    from auditq.checkpoint.safetensors_header import read_header

    return {name: {"dtype": e.dtype, "shape": list(e.shape)} for name, e in read_header(path).items()}


def checkpoint_tensors(path: Path) -> dict[str, tuple[torch.dtype | None, int]]:
    """tensor name -> (stored dtype, number of elements) over every .safetensors file of a checkpoint dir."""
    out: dict[str, tuple[torch.dtype | None, int]] = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        for name, meta in safetensors_header(file).items():
            if name == "__metadata__":
                continue
            numel = 1
            for dim in meta["shape"]:
                numel *= int(dim)
            out[name] = (TORCH_DTYPES.get(meta["dtype"]), numel)
    return out


def stored_dtype(path: Path) -> torch.dtype:
    """The checkpoint's own float dtype: config.json's, else the dtype holding most stored elements."""
    try:
        config = json.loads(read_text(Path(path) / "config.json"))
    except (OSError, ValueError, InputError):
        config = {}
    named = config.get("dtype") or config.get("torch_dtype")
    if isinstance(named, str) and named.replace("torch.", "") in DTYPES:
        return DTYPES[named.replace("torch.", "")]
    counts: dict[torch.dtype, int] = {}
    for dtype, numel in checkpoint_tensors(path).values():
        if dtype is not None and dtype.is_floating_point:
            counts[dtype] = counts.get(dtype, 0) + numel
    return max(counts, key=counts.get) if counts else torch.float32


def parameter_count(path: Path) -> int:
    return sum(numel for _, numel in checkpoint_tensors(path).values())


# --------------------------------------------------------------------------- resolution


def cpu_available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); psutil elsewhere; None when neither can tell."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def cuda_available_bytes(device: str, device_map: str | None) -> int:
    if device_map:
        return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    return int(torch.cuda.mem_get_info(torch.device(device))[0])


def needed_bytes(n_params: int, dtype: torch.dtype, device: str = "cpu") -> int:
    """Peak bytes of an audit with one model resident: the model with slack, working memory, and on
    the CPU the process's own imports (on a GPU they live in host memory, not in the device's)."""
    imports = CPU_IMPORT_BYTES if device == "cpu" else 0
    return int(MODEL_FACTOR * n_params * torch.empty((), dtype=dtype).element_size()) + WORKING_BYTES + imports


def resolve(request: ComputeRequest, checkpoint_dir: Path, available: int | None = None) -> Placement:
    """Resolve auto, check the devices exist and that one model fits; InputError (exit 2) otherwise.

    `available`: bytes free on the target (None: measure it).
    """
    device, dtype_name = parse_device(request.device), parse_dtype(request.dtype)
    device_map = parse_device_map(request.device_map)
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device.startswith("cuda"):
        if not has_cuda:
            raise InputError(f"--device {request.device}: no CUDA device is visible to torch "
                             f"(torch {torch.__version__}); use --device cpu")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
        device = f"cuda:{index}"
    if device_map:
        if device == "cpu":
            raise InputError("--device-map auto spreads a model over GPUs; no CUDA device is in use (drop it on a CPU)")
        try:
            import accelerate  # noqa: F401
        except ImportError:
            raise InputError("--device-map auto needs accelerate: pip install accelerate") from None
    n_params = parameter_count(checkpoint_dir)
    if available is None:
        available = cpu_available_bytes() if device == "cpu" else cuda_available_bytes(device, device_map)
    note = None
    if dtype_name != "auto":
        dtype = DTYPES[dtype_name]
    elif device == "cpu":
        dtype = torch.float32
        if available is not None and needed_bytes(n_params, dtype, device) > available \
                and needed_bytes(n_params, torch.bfloat16, device) <= available:
            dtype = torch.bfloat16
            note = (f"--dtype auto: float32 would need ~{needed_bytes(n_params, torch.float32, device) / GIB:.1f} GiB, "
                    f"{available / GIB:.1f} GiB available: computing in bfloat16 on the CPU")
        elif available is not None and needed_bytes(n_params, dtype, device) > available:
            dtype = torch.bfloat16
    else:
        dtype = stored_dtype(checkpoint_dir)
    placement = Placement(device=device, dtype=dtype, device_map=device_map,
                          needs_bytes=needed_bytes(n_params, dtype, device), available_bytes=available, note=note)
    if available is not None and placement.needs_bytes > available:
        raise InputError(placement.estimate_line().replace("memory: ", "cannot fit: ") + "; " +
                         _hint(placement))
    return placement


def _hint(placement: Placement) -> str:
    if placement.device == "cpu":
        if placement.dtype == torch.float32:
            return "--dtype bfloat16 halves it"
        return "use a machine with more memory, or --device cuda"
    if not placement.device_map and torch.cuda.device_count() > 1:
        return "--device-map auto spreads the model over all visible GPUs"
    if placement.dtype == torch.float32:
        return "--dtype bfloat16 halves it"
    return "--device cpu, or a GPU with more memory"
