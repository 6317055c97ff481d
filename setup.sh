#!/usr/bin/env bash
# One-command setup: installs auditq with the GGUF engine and the test tools.
# torch is pinned to the CPU build through constraints.txt (PIP_CONSTRAINT reaches build
# environments too), so no dependency can pull a multi-GB CUDA torch.
set -euo pipefail
cd "$(dirname "$0")"
export PIP_CONSTRAINT="$PWD/constraints.txt"
python3 -m pip install --upgrade-strategy only-if-needed -e ".[all]"
