#!/usr/bin/env bash
# Installs nnunetv2 (editable) with its test dependencies into the current Python environment.
# A working torch/torchvision pair is installed first unless torch is already importable; set
# NNUNET_TORCH_SPEC to choose another one (e.g. a CUDA build of your choice).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install ${NNUNET_TORCH_SPEC:-"torch==2.14.1" "torchvision==0.29.1"}
fi
"$PY" -m pip install -e ".[test]"
