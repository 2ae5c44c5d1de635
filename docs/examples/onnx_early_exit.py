"""Real early exits in ONNX Runtime, side by side with the PyTorch export, on a run's test
images (docs/deploy.md):

    python docs/examples/onnx_early_exit.py RUN_DIR MODEL_ONNX_DIR MODEL_PT
"""
import sys
from pathlib import Path

import torch

import bench.export
from bench.pipeline.restore import load_splits
from bench.store import Run

run_dir, onnx_dir, pt_file = sys.argv[1:4]
onnx, pt = bench.export.load(onnx_dir, threads=1), bench.export.load(pt_file)  # ORT, torch
run = Run(Path(run_dir))
x, y = map(torch.cat, zip(*load_splits(run.config, run.path).batches("test", 256)))
for budget in [*onnx.budgets, None]:  # None: every image to the last exit
    classes, exits, _ = onnx.predict(x, budget_mmacs=budget)  # stages in onnxruntime
    want_classes, want_exits, _ = pt.predict(x, budget_mmacs=budget)  # the same in PyTorch
    agreement = float(((classes == want_classes) & (exits == want_exits)).double().mean())
    shares = (torch.bincount(exits, minlength=onnx.num_exits) / len(x)).tolist()
    print(f"budget {budget} MMACs: top-1 {100 * float((classes == y).double().mean()):.2f} %, "
          f"exit shares {[round(s, 3) for s in shares]}, agreement with PyTorch {agreement:.3f}")
