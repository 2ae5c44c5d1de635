"""The methods with modules, a post-training phase or their own step under DDP (torchrun,
2 CPU processes, gloo): they finish, record the world size, and rank 0's fit of ZTW's
ensembles is the one saved."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
SUITE = {
    "name": "ddp-methods",
    "dataset": {"name": "synthetic", "heldout": 64,
                "options": {"num_classes": 4, "image_size": 16, "train_size": 320,
                            "test_size": 64}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": ["imta", {"name": "ztw", "options": {"ensemble_epochs": 3}},
                {"name": "l2w", "options": {"hidden": 16}}],
    "training": {"epochs": 2, "batch_size": 32, "device": "cpu"},
    "budgets": {"fractions": [0.8]},
}


@pytest.mark.slow
def test_methods_train_under_ddp(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "bench", "run", str(suite), "--results",
                          str(tmp_path / "results"), "--no-report", "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted((tmp_path / "results" / "ddp-methods").glob("chain_tiny--*"))
    assert [r.name.split("--")[1] for r in runs] == ["imta", "l2w", "ztw"]
    for run in runs:
        assert json.loads((run / "status.json").read_text())["state"] == "done"
        record = json.loads((run / "training.json").read_text())
        assert record["world_size"] == 2 and len(record["epochs"]) == 2
        logits = torch.load(run / "predictions.pt", weights_only=True)["test"]["logits"]
        assert torch.isfinite(logits.float()).all()
    ztw = runs[2]
    record = json.loads((ztw / "training.json").read_text())
    assert record["post_training"]["split"] == "train"
    assert record["post_training"]["samples"] == 320 - 64  # every training image, once
    model = torch.load(ztw / "checkpoint.pt", weights_only=True)["model"]
    assert bool(model["method_modules.ensembles_fitted"])
