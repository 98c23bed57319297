#!/usr/bin/env bash
# The converged comparison (experiments/plans/converged_comparison_plan.md): six methods x seeds
# on SST-2 and MR (3 epochs) and CoLA (10 epochs), the classifier alone beside the adapters, one
# bench_compare process per (task, method, seed), --jobs at a time. Resumable: every run checkpoints
# under --work (bench_compare --work-dir), so the same command after a kill continues where the runs
# were and skips the finished ones. Then one report per task (bench_compare --join) and the table over
# the tasks (compare_tasks.py), under --out.
#
#   bash experiments/converged_comparison.sh                       # CPU: ~8 h with 2 jobs on 2 cores
#   bash experiments/converged_comparison.sh --device cuda --jobs 4
#   bash experiments/converged_comparison.sh --tasks sst2 --methods "lora-r4 autolora" --seeds 0 -- --steps 20
# Arguments after -- go to every bench_compare run (a smoke test's smaller budget, say). PYTHON: the
# interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")"
tasks="sst2 mr cola" methods="full-ft lora-r4 adalora autolora autolora-random autolora-first-order"
seeds="0 1 2" device=cpu jobs=2 work=../runs/converged out=converged
while [ $# -gt 0 ]; do
  case $1 in
    --tasks) tasks=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "converged_comparison.sh: unknown argument $1 (see the header for the options)" >&2; exit 2 ;;
  esac
done
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "converged_comparison.sh: --jobs: expected a positive integer, got '$jobs'" >&2; exit 2; }
mkdir -p "$work/reports"
work=$(cd "$work" && pwd)
case $out in /*) ;; *) out=$PWD/results/$out ;; esac  # relative: under experiments/results, as --out
PY=${PYTHON:-python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
budget() { case $1 in cola) echo "10 12" ;; mr) echo "3 4" ;; *) echo "3 8" ;; esac; }  # epochs, eval points

list=()
for task in $tasks; do
  read -r epochs points <<< "$(budget "$task")"
  for method in $methods; do
    for seed in $seeds; do list+=("$task $method $seed $epochs $points"); done
  done
done
run_one() {
  read -r task method seed epochs points <<< "$1"; shift
  $PY bench_compare.py --mode full --datasets "$task" --methods "$method" --seeds "$seed" --epochs "$epochs" \
    --eval-points "$points" --max-length 64 --lr-lora 1e-3 --extra-trainable --grid-dataset none \
    --device "$device" --work-dir "$work/runs/${epochs}ep" --checkpoint-every 250 \
    --out "$work/reports" --tag "${task}_${method}_s${seed}" "$@" > "$work/reports/${task}_${method}_s${seed}.log" 2>&1 \
    || { echo "failed: $task $method seed $seed (log: $work/reports/${task}_${method}_s${seed}.log)" >&2; return 1; }
  echo "done: $task $method seed $seed"
}
export -f run_one; export work device PY
printf '%s\n' "${list[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {} "$@"

joined=()
for task in $tasks; do
  read -r epochs points <<< "$(budget "$task")"
  $PY bench_compare.py --join "$work"/reports/compare_"${task}"_*.json --out "$out" \
    --tag "${task}_${epochs}epoch_classifier"
  joined+=("$out/compare_${task}_${epochs}epoch_classifier.json")
done
$PY compare_tasks.py "${joined[@]}" --out "$out" --name compare_tasks_converged
