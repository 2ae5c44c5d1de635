"""Run a suite: for each run, data -> backbone -> method -> train -> predictions -> metrics.

Data flows one way into ``results/<suite>/<run_id>/`` (docs/results-format.md). Finished runs
are skipped, interrupted ones resume from their last checkpoint, and a failed run is
recorded as failed while the others go on.
"""
from __future__ import annotations

import os
import platform
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import bench
import methods as methods_registry
from bench import backbones, data as datasets, evaluate, flops
from bench.results import RunDir, now, save_torch, load_torch, write_json, write_summary, \
    write_text
from bench.train import Dist, NonFiniteLoss, Trainer, predict


def seed_everything(seed: int) -> None:
    """One seed drives Python, NumPy and torch (the data order and split use it too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(bench.__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device) -> dict:
    try:
        import torchvision
        tv = torchvision.__version__
    except Exception:  # a mismatched torchvision raises RuntimeError, not ImportError
        tv = None
    return {"torch": torch.__version__, "torchvision": tv, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "code_version": bench.__version__, "git_commit": git_commit(), "date": now(),
            "threads": torch.get_num_threads(), "hostname": socket.gethostname()}


class DataCache:
    """Splits depend on the data set config and the seed; runs that share both share them."""

    def __init__(self):
        self._cache: dict[str, object] = {}

    def get(self, dataset: dict, seed: int):
        key = repr((sorted(dataset.items(), key=str), seed))
        if key not in self._cache:
            subset = dataset.get("subset") or {}
            self._cache[key] = datasets.load(
                dataset["name"], dataset["root"], download=dataset["download"],
                heldout=dataset["heldout"], seed=seed, train_subset=subset.get("train"),
                test_subset=subset.get("test"), options=dataset.get("options") or {})
        return self._cache[key]


def finite_thresholds(thresholds) -> list[float]:
    """Confidences lie in [0, 1]: +inf (nobody leaves) becomes 2.0 and -inf (everybody
    leaves) -1.0, with the same effect and valid JSON."""
    return [2.0 if t == float("inf") else -1.0 if t == float("-inf") else float(t)
            for t in thresholds]


def compute_metrics(preds: dict, exit_mmacs: list[float], budgets: list[float]) -> dict:
    """metrics.json from the saved predictions; thresholds are fitted on held-out only."""
    val, test = preds["heldout"], preds["test"]
    val_logits, test_logits = val["logits"].float(), test["logits"].float()
    top5 = evaluate.topk_accuracy(test_logits, test["targets"], 5)
    anytime = [{"exit": n + 1, "mmacs": exit_mmacs[n], "top1": a, "top5": top5[n]}
               for n, a in enumerate(evaluate.anytime_accuracy(test_logits, test["targets"]))]
    held = evaluate.anytime_accuracy(val_logits, val["targets"])
    metrics = {"anytime": anytime,
               "heldout_anytime": [{"exit": n + 1, "top1": a} for n, a in enumerate(held)],
               "budgeted": [], "curve": []}
    if len(val["targets"]) == 0:
        return metrics  # no held-out split: no thresholds can be fitted honestly
    curve = evaluate.budget_curve(val_logits, val["targets"], test_logits, test["targets"],
                                  exit_mmacs)
    metrics["curve"] = [{"q": c["q"], "accuracy": c["accuracy"], "mmacs": c["mmacs"],
                         "exit_shares": c["exit_shares"],
                         "thresholds": finite_thresholds(c["thresholds"])}
                        for c in curve]
    fitted = evaluate.accuracy_at_budgets(val_logits, val["targets"], test_logits,
                                          test["targets"], exit_mmacs, budgets)
    metrics["budgeted"] = [{"budget_mmacs": b["budget"], "accuracy": b["accuracy"],
                            "mmacs": b["flops"], "thresholds": finite_thresholds(b["thresholds"]),
                            "exit_shares": b["exit_shares"], "q": b.get("q"),
                            "heldout_mmacs": b.get("heldout_flops")} for b in fitted]
    return metrics


@dataclass
class RunContext:
    results: Path  # results/<suite slug>/
    data: DataCache
    dist: Dist
    progress: object = None  # bench.progress.Progress or None


def run_one(spec, ctx: RunContext) -> str:
    """Train and evaluate one run; returns its final state ('done' or 'failed')."""
    run = RunDir(ctx.results / spec.run_id)
    training = spec.config["training"]
    epochs = training["epochs"]
    main = ctx.dist.is_main
    if main:
        write_json(run.file("config.json"),
                   {"suite": spec.suite_slug, "run_id": spec.run_id, **spec.config})
        resumed = run.status().get("epoch", 0) if run.file("checkpoint.pt").exists() else 0
        run.set_status("running", epoch=resumed, epochs=epochs)
    try:
        _train_and_evaluate(spec, run, ctx)
    except NonFiniteLoss as err:
        if main:
            run.set_status("failed", epoch=_epochs_done(run), epochs=epochs, error=str(err))
        return "failed"
    if main:
        run.set_status("done", epoch=epochs, epochs=epochs)
    return "done"


def _epochs_done(run: RunDir) -> int:
    ckpt = run.file("checkpoint.pt")
    return load_torch(ckpt)["epoch"] if ckpt.exists() else 0


def _train_and_evaluate(spec, run: RunDir, ctx: RunContext) -> None:
    training = spec.config["training"]
    device = pick_device(training["device"])
    main = ctx.dist.is_main
    seed_everything(spec.seed)
    splits = ctx.data.get(spec.config["dataset"], spec.seed)
    model = backbones.create(spec.backbone_name, num_classes=spec.num_classes, **spec.overrides)
    if main:
        write_json(run.file("environment.json"), environment(device))
        write_json(run.file("heldout_index.json"), {"indices": list(map(int, splits.heldout_indices))})
        write_json(run.file("costs.json"), {
            "mmacs": spec.exit_mmacs, "params": flops.params_per_exit(model),
            "counter": "fvcore multiply-adds (MACs)", "input_size": list(spec.input_size)})
    model.to(device)
    method = methods_registry.create(spec.method_name, **spec.method_options)
    show = ctx.progress.epoch_callback(spec, run) if ctx.progress else None

    def on_epoch(info: dict) -> None:
        run.set_status("running", epoch=info["epoch"], epochs=training["epochs"])
        if show:
            show(info)

    trainer = Trainer(model, method, splits, training, spec.seed, device,
                      run.file("checkpoint.pt"), ctx.dist, on_epoch=on_epoch,
                      wrap=getattr(ctx, "wrap", None))
    state = trainer.fit()
    if not main:
        return
    write_text(run.file("history.csv"), pd.DataFrame(state.history).to_csv(index=False))
    preds = {}
    for split in ("heldout", "test"):
        logits, targets = predict(model, method, splits.batches(
            split, training["eval_batch_size"], device=device),
            channels_last=trainer.channels_last)
        # Saved as float16 and metrics computed from what was saved, so that a later
        # evaluation from disk gives exactly the same numbers.
        preds[split] = {"logits": logits.half(), "targets": targets.long()}
    save_torch(run.file("predictions.pt"), preds)
    write_json(run.file("metrics.json"),
               compute_metrics(preds, spec.exit_mmacs, spec.budgets_mmacs))
