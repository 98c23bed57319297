#!/usr/bin/env bash
# Creates .venv (once) and installs autolora with the extras its demo and its tests need.
# PyTorch is pinned and installed first, in the build that fits the machine (scripts/torch_build.sh):
# the CUDA build where an NVIDIA GPU is present, else the CPU build where it lies on disk (or on
# PyTorch's CPU index), because a bare `torch` requirement would pull several GB of CUDA packages.
# AUTOLORA_TORCH_BUILD=cpu|cuda|auto (default auto) overrides the choice; AUTOLORA_TORCH_CUDA_INDEX
# names PyTorch's CUDA index tried when the default index has no such wheel (default cu128).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${AUTOLORA_TORCH_VERSION:-2.13.0}"
VENV="${AUTOLORA_VENV:-.venv}"
# shellcheck source=torch_build.sh
source scripts/torch_build.sh
choice=$(choose_torch_build)
TORCH_BUILD="${choice%% *}"
echo "setup_env: torch ${TORCH_VERSION}, ${choice}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }

torch_cuda() { "$PY" -c "import torch; print(torch.version.cuda or '')"; }
if ! "$PY" -c "import torch" 2>/dev/null; then
  if [ "$TORCH_BUILD" = cuda ]; then
    # PyPI's Linux wheel is the CUDA build; PyTorch's own index where the default one has none.
    pip_install "torch==${TORCH_VERSION}" 2>/dev/null \
      || pip_install "torch==${TORCH_VERSION}" \
        --index-url "https://download.pytorch.org/whl/${AUTOLORA_TORCH_CUDA_INDEX:-cu128}"
  else
    pip_install "torch==${TORCH_VERSION}+cpu" 2>/dev/null \
      || pip_install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
      || pip_install "torch==${TORCH_VERSION}"
  fi
fi
# An existing torch is kept; say so when its build is not the one chosen (`autolora doctor` tells too).
case "$TORCH_BUILD:$(torch_cuda)" in
  cuda:) echo "setup_env: warning: the installed torch is the CPU build; for the CUDA one:" \
    "$PY -m pip install --force-reinstall torch==${TORCH_VERSION} --index-url" \
    "https://download.pytorch.org/whl/${AUTOLORA_TORCH_CUDA_INDEX:-cu128}" >&2 ;;
  cpu:?*) echo "setup_env: note: the installed torch is a CUDA build (kept)" >&2 ;;
esac
installed_torch=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
pip_install "setuptools>=64" wheel  # the editable install below builds without isolation
# Everything else, constrained to the torch already there so nothing replaces it. The two commands'
# extras (pyproject.toml): demo (`autolora run` and its MiniLM) and test (every extra, the test tools).
pip_install --constraint <(echo "torch==${installed_torch}") \
  -e ".[demo,test,docs]" --no-build-isolation
# METEOR 1.5 and the PTB tokenizer of the NLG metrics are Java programs (autolora.eval.nlg_metrics);
# without Java those metrics fall back to pure Python and say so. Installed where this can (root with
# apt-get); the setup never fails for want of it.
if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    mkdir -p /usr/share/man/man1  # slim Debian images lack it, and the JRE's postinst needs it
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless; } \
      >/dev/null 2>&1 || echo "setup_env: note: could not install Java (default-jre-headless)" >&2
  else
    echo "setup_env: note: no java, and no root apt-get to install it: NLG metrics use the fallbacks" >&2
  fi
fi
