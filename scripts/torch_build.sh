#!/usr/bin/env bash
# Which PyTorch build scripts/setup_env.sh installs: prints "cpu" or "cuda" and why, on one line.
#   AUTOLORA_TORCH_BUILD=auto|cpu|cuda  auto (the default): cuda where an NVIDIA GPU is present
#   AUTOLORA_GPU_PROBE=present|absent   replaces the probe (the tests check both answers without a GPU)
# The probe: `nvidia-smi -L` lists the GPUs, or the NVIDIA driver is loaded (/proc/driver/nvidia).
# Sourced by setup_env.sh (choose_torch_build); run on its own, it prints the choice.

# Prints how a GPU was found and succeeds, or fails when none is.
gpu_probe() {
  case "${AUTOLORA_GPU_PROBE:-}" in
    present) echo "AUTOLORA_GPU_PROBE=present" ;;
    absent) return 1 ;;
    "")
      if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "nvidia-smi -L"
      elif [ -e /proc/driver/nvidia ]; then
        echo "/proc/driver/nvidia"
      else
        return 1
      fi
      ;;
    *)
      echo "AUTOLORA_GPU_PROBE: expected present or absent, got '${AUTOLORA_GPU_PROBE}'" >&2
      return 2
      ;;
  esac
}

choose_torch_build() {
  local want="${AUTOLORA_TORCH_BUILD:-auto}" how rc
  case "$want" in
    cpu | cuda) echo "$want (AUTOLORA_TORCH_BUILD=$want)" ;;
    auto)
      how=$(gpu_probe) && rc=0 || rc=$?
      case $rc in
        0) echo "cuda (auto: an NVIDIA GPU, found by $how)" ;;
        1) echo "cpu (auto: no NVIDIA GPU: nvidia-smi -L fails and /proc/driver/nvidia is absent)" ;;
        *) return 2 ;;
      esac
      ;;
    *)
      echo "AUTOLORA_TORCH_BUILD: expected auto, cpu or cuda, got '$want'" >&2
      return 2
      ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  choose_torch_build
fi
