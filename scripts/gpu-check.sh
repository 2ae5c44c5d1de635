#!/usr/bin/env bash
# GPU check (issue 26), one prepared script to run once on a GPU machine, from the repository
# root. msdnet10_cifar / BoostNet at batch 64, trained on random CIFAR-sized batches
# augmented on the device as the trainer's data are:
#   1. one run: fp32 eager, bf16 eager, bf16 + CUDA graphs (training.cuda_graphs);
#   2. bf16 + CUDA graphs with K = 2, 4, 8 runs side by side on the GPU (as
#      `bench run --runs-per-device K` starts them): aggregate images/s;
#   3. evaluation at batch 1024 (forward over every exit, fp32 and bf16);
#   4. `bench run suites/cifar100-methods.yaml --dry-run --estimate`, as the suite is (fp32
#      eager) and with bf16 + CUDA graphs;
#   5. the tests marked `cuda` of the CUDA-graph step and the precision engine.
# Each training measurement times WINDOW seconds (default 10) after a warm-up, i.e. a
# fraction of an epoch, and extrapolates to a 50,000-image epoch: say so where the figures
# are quoted. Every step prints a header and runs under its own time limit; a failing step
# does not stop the others. The limits add up to 570 s, so the script ends within 10
# minutes. At the end: the table to paste into docs/benchmarks.md (with the date, the GPU
# and this command) and every step's exit status. Outputs (one log per step, table.jsonl,
# table.md, summary.txt) go to $OUT when it is set, else to ${TMPDIR:-/tmp}/gpu-check.
#
#   scripts/gpu-check.sh
#   EXTRA=1 scripts/gpu-check.sh     # also a profile of the eager bf16 step (+45 s)
#
# Settings (environment): PYTHON (default .venv/bin/python, else python3), DEVICE (cuda),
# BACKBONE (msdnet10_cifar), CLASSES (100), BATCH (64), WINDOW (10 timed seconds),
# EPOCH_STEPS (50 steps per round), RUNS_LIST ("2 4 8"), EVAL_BATCH (1024),
# ESTIMATE_SUITE (suites/cifar100-methods.yaml), EXTRA (unset). A quick run of the script
# itself on a CPU (a minute or two; tests/test_gpu_check.py runs its Python parts):
#   DEVICE=cpu BACKBONE=chain_tiny CLASSES=5 BATCH=8 WINDOW=1 EPOCH_STEPS=2 RUNS_LIST=2 \
#       EVAL_BATCH=16 ESTIMATE_SUITE=suites/quickstart.yaml scripts/gpu-check.sh
set -u
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
DEVICE=${DEVICE:-cuda}
BACKBONE=${BACKBONE:-msdnet10_cifar}
CLASSES=${CLASSES:-100}
BATCH=${BATCH:-64}
WINDOW=${WINDOW:-10}
EPOCH_STEPS=${EPOCH_STEPS:-50}
RUNS_LIST=${RUNS_LIST:-2 4 8}
EVAL_BATCH=${EVAL_BATCH:-1024}
ESTIMATE_SUITE=${ESTIMATE_SUITE:-suites/cifar100-methods.yaml}
OUT_DIR=${OUT:-${TMPDIR:-/tmp}/gpu-check}
mkdir -p "$OUT_DIR"
SUMMARY="$OUT_DIR/summary.txt"
TABLE="$OUT_DIR/table.jsonl"
: > "$SUMMARY"
: > "$TABLE"
ESTIMATE_DEVICE=()
if [ "$DEVICE" = cpu ]; then ESTIMATE_DEVICE=(--set training.device=cpu); fi

# step NAME LIMIT_S COMMAND...: a header, the command under `timeout`, its output in
# $OUT_DIR/NAME.log and on the terminal, and its exit status in the summary.
step() {
    local name=$1 limit=$2
    shift 2
    echo
    echo "=== $name ($(date -u +%H:%M:%S) UTC, limit ${limit} s) ==="
    echo "+ $*"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    local rc=${PIPESTATUS[0]}
    local note=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then note=" (timed out)"; fi
    echo "$name: exit $rc$note, $((SECONDS - started)) s" | tee -a "$SUMMARY"
}

train() {  # train NAME LIMIT_S SETTING RUNS
    step "$1" "$2" "$PYTHON" scripts/gpu_check.py throughput --device "$DEVICE" \
        --backbone "$BACKBONE" --classes "$CLASSES" --batch "$BATCH" --window "$WINDOW" \
        --epoch-steps "$EPOCH_STEPS" --setting "$3" --runs "$4" --table "$TABLE"
}

step environment 20 "$PYTHON" -c "
import torch, platform
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', platform.python_version())
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported(including_emulation=False))
else:
    print('no CUDA device')
"
train train-fp32 45 fp32 1
train train-bf16 45 bf16 1
train train-bf16-graphs 45 bf16-graphs 1
limits=(50 60 75)  # K = 2, 4, 8: more processes to start
i=0
for k in $RUNS_LIST; do
    train "train-bf16-graphs-k$k" "${limits[$i]:-75}" bf16-graphs "$k"
    i=$((i + 1))
done
step eval 30 "$PYTHON" scripts/gpu_check.py eval --device "$DEVICE" --backbone "$BACKBONE" \
    --classes "$CLASSES" --batch "$EVAL_BATCH" --table "$TABLE"
step estimate 110 "$PYTHON" -m bench run "$ESTIMATE_SUITE" --dry-run --estimate \
    "${ESTIMATE_DEVICE[@]}"
step estimate-bf16-graphs 60 "$PYTHON" -m bench run "$ESTIMATE_SUITE" --dry-run --estimate \
    "${ESTIMATE_DEVICE[@]}" --set training.precision=bf16 --set training.cuda_graphs=auto
step pytest-cuda 30 "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda \
    tests/pipeline/test_step_graphs.py tests/engine/test_cuda_graphs.py
if [ -n "${EXTRA:-}" ]; then  # where the eager bf16 step's time goes: one profiled round
    step profile-bf16 45 "$PYTHON" -m bench speed --device "$DEVICE" --backbone "$BACKBONE" \
        --method boostnet --batch-size "$BATCH" --epoch --epoch-steps 20 --rounds 1 \
        --warmup 1 --precision bf16 --profile
fi

echo
echo "=== table ($OUT_DIR/table.md; $(date -u +%Y-%m-%d), WINDOW=$WINDOW s timed per row, extrapolated) ==="
"$PYTHON" scripts/gpu_check.py table "$TABLE" | tee "$OUT_DIR/table.md"
echo
echo "=== the estimate's BoostNet runs (compare with the table's epoch x 300) ==="
grep -h -e "--boostnet--" -e "^suite:" -e "^estimate on" "$OUT_DIR"/estimate*.log || true
echo
echo "=== summary ($OUT_DIR/summary.txt) ==="
cat "$SUMMARY"
! grep -qv ": exit 0," "$SUMMARY"
