#!/usr/bin/env bash
# The test command: sets up .venv, then runs the whole suite on the CPU (Triton in interpreter mode).
# Arguments go to pytest (`-m "not slow"`: the fast subset). AUTOLORA_SETUP=if-missing sets up only
# when .venv has no python: setup_env.sh's pip checks take longer than the fast subset itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${AUTOLORA_SETUP:-always}" != if-missing ] || [ ! -x .venv/bin/python ]; then
  bash scripts/setup_env.sh
fi
export TRITON_INTERPRET=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
