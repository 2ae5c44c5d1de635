#!/usr/bin/env bash
# GPU check: one CIFAR-sized epoch of msdnet10_cifar / BoostNet at batch 64 timed in fp32,
# bf16 and bf16 + torch.compile (CUDA graphs), a profile of the eager bf16 step (the ops
# with the most GPU time, and the GPU's busy time against the wall-clock), then the tests
# marked `cuda`. Each step prints a header and runs under its own time limit; a failing step
# does not stop the others, and the last lines list every step's exit status. The limits
# add up to 465 s, so the script ends within 8 minutes (not yet run on a GPU; the CPU run
# below checks the script itself). Outputs (one log per step, summary.txt) go to $OUT when
# it is set, else to ${TMPDIR:-/tmp}/gpu-check.
#
#   scripts/gpu-check.sh                       # on the GPU machine, from the repository root
#   REFERENCE_DIR=/path/to/Boosted-Dynamic-Networks scripts/gpu-check.sh   # + the reference
#
# Settings (environment): PYTHON (default .venv/bin/python, else python3), DEVICE (cuda),
# BACKBONE (msdnet10_cifar), BATCH (64), EPOCH_STEPS (100 steps per timed round), ROUNDS (3),
# WARMUP (2 rounds), REFERENCE_DIR (unset: the reference is not timed), LIMIT_S (seconds per
# eager timing, 75), COMPILE_LIMIT_S (180), PROFILE_LIMIT_S (45), PYTEST_LIMIT_S (60). A
# quick run of the script itself on a CPU:
#   DEVICE=cpu BACKBONE=chain_tiny EPOCH_STEPS=2 ROUNDS=1 WARMUP=1 scripts/gpu-check.sh
set -u
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
DEVICE=${DEVICE:-cuda}
BACKBONE=${BACKBONE:-msdnet10_cifar}
BATCH=${BATCH:-64}
EPOCH_STEPS=${EPOCH_STEPS:-100}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
LIMIT_S=${LIMIT_S:-75}  # limits: 30 + 2 x 75 + 180 + 45 + 60 = 465 s in all
COMPILE_LIMIT_S=${COMPILE_LIMIT_S:-180}
PROFILE_LIMIT_S=${PROFILE_LIMIT_S:-45}
PYTEST_LIMIT_S=${PYTEST_LIMIT_S:-60}
OUT_DIR=${OUT:-${TMPDIR:-/tmp}/gpu-check}
mkdir -p "$OUT_DIR"
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"

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

speed() {  # speed NAME LIMIT_S ARGS...: bench speed --epoch on the chosen backbone
    local name=$1 limit=$2
    shift 2
    local reference=()
    if [ -n "${REFERENCE_DIR:-}" ]; then reference=(--reference "$REFERENCE_DIR"); fi
    step "$name" "$limit" "$PYTHON" -m bench speed --device "$DEVICE" --backbone "$BACKBONE" \
        --method boostnet --batch-size "$BATCH" --epoch --epoch-steps "$EPOCH_STEPS" \
        --rounds "$ROUNDS" --warmup "$WARMUP" "${reference[@]}" "$@"
}

step environment 30 "$PYTHON" -c "
import torch, platform
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', platform.python_version())
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported(including_emulation=False))
else:
    print('no CUDA device')
"
speed speed-fp32 "$LIMIT_S" --precision fp32
speed speed-bf16 "$LIMIT_S" --precision bf16
speed speed-bf16-compile "$COMPILE_LIMIT_S" --precision bf16 --compile
# where the eager bf16 step's time goes: one profiled round of 20 steps, no reference
REFERENCE_DIR="" speed profile-bf16 "$PROFILE_LIMIT_S" --precision bf16 --epoch-steps 20 \
    --rounds 1 --warmup 1 --profile
step pytest-cuda "$PYTEST_LIMIT_S" "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda \
    tests/pipeline

echo
echo "=== summary ($OUT_DIR/summary.txt) ==="
cat "$SUMMARY"
! grep -qv ": exit 0," "$SUMMARY"
