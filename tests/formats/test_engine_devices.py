"""Engine placement on CPU and CUDA (auditq.formats.engine_devices): pure selection logic.

The CUDA branches are checked here as decisions only; no GPU was available to run them.
"""

from __future__ import annotations

import types

from auditq.formats.engine_devices import gptqmodel_kernel, llama_cpp_offload, llama_cpp_supports_gpu


def test_gptqmodel_uses_torch_kernels_on_cpu_and_auto_cuda_kernels_on_gpu():
    assert gptqmodel_kernel("gptq", "cpu", {"GPTQ_TORCH", "AUTO"}).backend == "GPTQ_TORCH"
    assert gptqmodel_kernel("gptq", "cpu", {"TORCH", "AUTO"}).backend == "TORCH"      # older GPTQModel
    assert gptqmodel_kernel("awq", "cpu").backend == "AWQ_TORCH"
    for method in ("gptq", "awq"):
        choice = gptqmodel_kernel(method, "cuda:1", {"GPTQ_TORCH", "AUTO"})
        assert (choice.backend, choice.dtype) == ("AUTO", "float16") and "CUDA" in choice.note
    assert gptqmodel_kernel("gptq", "cpu").dtype == "float32"


def test_llama_cpp_offloads_every_layer_only_on_cuda_with_a_gpu_build():
    assert llama_cpp_offload("cuda", True) == (-1, "cuda (all layers offloaded by llama.cpp)")
    layers, note = llama_cpp_offload("cuda:0", False)
    assert layers == 0 and note.startswith("cpu") and "without GPU support" in note
    assert llama_cpp_offload("cpu", True) == (0, "cpu")


def test_gpu_offload_support_is_read_from_the_build():
    assert llama_cpp_supports_gpu(types.SimpleNamespace(llama_supports_gpu_offload=lambda: True))
    assert not llama_cpp_supports_gpu(types.SimpleNamespace(llama_supports_gpu_offload=lambda: False))
    assert not llama_cpp_supports_gpu(types.SimpleNamespace())                       # too old to say

    def broken():
        raise OSError("no shared library")

    assert not llama_cpp_supports_gpu(types.SimpleNamespace(llama_supports_gpu_offload=broken))

