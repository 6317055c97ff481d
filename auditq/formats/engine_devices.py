"""Where each engine runs, decided by pure functions (unit-tested on CPU; the CUDA branches never ran here).

- GPTQ / AWQ (GPTQModel): on CPU its torch kernels (TorchLinear with float32 activations for GPTQ,
  AwqTorchLinear for AWQ); on CUDA ``BACKEND.AUTO`` in float16, i.e. GPTQModel's own choice of CUDA
  kernel (Marlin, ExLlama v2, Triton ...) for the GPU it finds: the usual deployment.
- bitsandbytes: the audit's device (``--device``), CUDA when available otherwise.
- llama.cpp: every layer offloaded (``n_gpu_layers=-1``) when the audit runs on CUDA *and* this
  llama-cpp-python build supports GPU offload (``llama_supports_gpu_offload()``); CPU otherwise,
  and the row says which and why.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelChoice:
    """GPTQModel backend (a BACKEND member name), the activation dtype, and the row's note."""

    backend: str
    dtype: str
    note: str


def gptqmodel_kernel(method: str, device: str, backends: frozenset[str] | set[str] = frozenset()) -> KernelChoice:
    """The GPTQModel backend that loads a `method` ("gptq"/"awq") checkpoint on `device`.

    `backends`: the BACKEND member names this GPTQModel has (older ones call GPTQ_TORCH "TORCH").
    """
    if device.startswith("cuda"):
        return KernelChoice("AUTO", "float16", "GPTQModel's automatic CUDA kernel choice (float16)")
    if method == "awq":
        return KernelChoice("AWQ_TORCH", "float32", "AwqTorchLinear on CPU (float16 matmuls, float32 elsewhere)")
    name = "GPTQ_TORCH" if "GPTQ_TORCH" in backends or not backends else "TORCH"
    return KernelChoice(name, "float32", "TorchLinear on CPU (float32 activations)")


def llama_cpp_supports_gpu(llama_cpp) -> bool:
    """Whether this llama-cpp-python build can offload layers to a GPU (False if it cannot say)."""
    probe = getattr(llama_cpp, "llama_supports_gpu_offload", None)
    if probe is None:
        return False
    try:
        return bool(probe())
    except Exception:  # noqa: BLE001 - a build that cannot answer is treated as CPU-only
        return False


def llama_cpp_offload(device: str, supports_gpu: bool) -> tuple[int, str]:
    """(n_gpu_layers, what the row says) for an audit on `device` with this llama-cpp-python build."""
    if not device.startswith("cuda"):
        return 0, "cpu"
    if supports_gpu:
        return -1, "cuda (all layers offloaded by llama.cpp)"
    return 0, ("cpu (this llama-cpp-python was built without GPU support; reinstall it with "
               "CMAKE_ARGS=\"-DGGML_CUDA=on\" to offload)")
