#!/usr/bin/env bash
# Creates .venv (once) and installs autolora with everything its demo and tests need.
# PyTorch is pinned and installed first: the CPU build where it lies on disk (or on PyTorch's CPU
# index), because a bare `torch` requirement would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${AUTOLORA_TORCH_VERSION:-2.13.0}"
VENV="${AUTOLORA_VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }

if ! "$PY" -c "import torch" 2>/dev/null; then
  pip_install "torch==${TORCH_VERSION}+cpu" 2>/dev/null \
    || pip_install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
    || pip_install "torch==${TORCH_VERSION}"
fi
installed_torch=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
pip_install "setuptools>=64" wheel  # the editable install below builds without isolation
# Everything else, constrained to the torch already there so nothing replaces it.
pip_install --constraint <(echo "torch==${installed_torch}") \
  -e ".[triton,test]" --no-build-isolation
