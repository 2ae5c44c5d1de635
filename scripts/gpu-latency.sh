#!/usr/bin/env bash
# CUDA latency of a quickstart run with real early exits (bench latency --device cuda),
# beside the CPU on the same machine, and the GPU-only test of bench latency.
#
#   PYTHON=.venv/bin/python OUT=/tmp/out bash scripts/gpu-latency.sh
#
# Trains one quickstart run (msdnet_tiny_b1s2 / boostnet / seed 0, 5 epochs) on the GPU
# unless RUN_DIR names a finished run folder, then measures it. Writes under $OUT:
# latency-<name>.json per measurement, latency.log (the printed tables), nvidia-smi.txt.
# About 3-5 minutes on one GPU (training ~1 min; batch 1 is bounded by --images).
set -uo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-$(mktemp -d)}
IMAGES_B1=${IMAGES_B1:-500}   # batch size 1: the first 500 test images (1000 at batch 64)
mkdir -p "$OUT"
log() { echo "== $* ($(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/latency.log"; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee -a "$OUT/latency.log"

if [ -z "${RUN_DIR:-}" ]; then
  log "training the quickstart boostnet run on cuda"
  timeout 400 "$PY" -m bench run suites/quickstart.yaml --only 'msdnet_tiny_b1s2/boostnet/0' \
      --set training.device=cuda --results "$OUT/results" --no-report --quiet \
      >> "$OUT/latency.log" 2>&1 || { log "training failed"; exit 1; }
  RUN_DIR=$(ls -d "$OUT"/results/quickstart/msdnet_tiny_b1s2--boostnet--s0--* | head -1)
fi
log "run $RUN_DIR"

measure() {  # name device batch threads images
  local images=()
  [ -n "$5" ] && images=(--images "$5")
  log "$1: bench latency --device $2 --batch-size $3 --threads $4 ${images[*]}"
  timeout 300 "$PY" -m bench latency "$RUN_DIR" --device "$2" --batch-size "$3" --threads "$4" \
      --warmup 20 --repeats 3 "${images[@]}" >> "$OUT/latency.log" 2>&1 \
    && cp "$RUN_DIR/latency.json" "$OUT/latency-$1.json" \
    || log "FAILED: $1"
}
measure cuda-b1 cuda 1 1 "$IMAGES_B1"
measure cuda-b64 cuda 64 1 ""
measure cpu-b1-t4 cpu 1 4 "$IMAGES_B1"
measure cpu-b64-t4 cpu 64 4 ""
measure cuda-b64-again cuda 64 1 ""   # last again: its spread from cuda-b64 is the noise

log "GPU test of bench latency"
timeout 300 "$PY" -m pytest tests/pipeline/test_latency.py tests/test_export.py -q -k "cuda or predict" \
    >> "$OUT/latency.log" 2>&1 || log "tests FAILED"
log "done"
tail -n 60 "$OUT/latency.log"
