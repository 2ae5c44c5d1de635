"""Run a suite: for each run, data -> backbone -> method -> train -> predictions -> metrics.

Data flows one way into ``results/<suite>/<run_id>/`` (docs/results-format.md). Finished runs
are skipped, interrupted ones resume from their last checkpoint, and a failed run is
recorded as failed while the others go on.
"""
from __future__ import annotations

import platform
import random
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import bench
import methods as methods_registry
from bench import backbones, data as datasets, evaluate, flops
from bench.store import Run, now
from bench.train import Dist, NonFiniteLoss, Trainer


def seed_everything(seed: int) -> None:
    """One seed drives Python, NumPy and torch (the data order and split use it too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str, dist: Dist | None = None) -> torch.device:
    """The training device; under torchrun on GPUs, the local rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist is not None and dist.world_size > 1:
        return torch.device("cuda", dist.local_rank)
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


def compute_metrics(preds: dict, exit_mmacs: list[float], budgets: list[float],
                    calibration: bool = False) -> dict:
    """metrics.json from the saved predictions; thresholds are fitted on held-out only.
    ``calibration`` adds post-hoc calibration temperatures (one per exit, fitted on
    held-out) with test ECE and budgeted accuracy before and after (bench.calibration)."""
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
    if calibration:
        metrics["calibration"] = calibration_metrics(val_logits, val["targets"], test_logits,
                                                     test["targets"], exit_mmacs, budgets)
    return metrics


def calibration_metrics(val_logits, val_targets, test_logits, test_targets, exit_mmacs,
                        budgets) -> dict:
    """metrics.json's "calibration": calibration temperatures T_n (softmax(F_n / T_n), not
    BoostNet's ensemble temperature t_n), test ECE (percent) and budgeted test accuracy
    before and after, thresholds refitted on the calibrated held-out logits."""
    from bench.calibration import calibration_report

    rep = calibration_report(val_logits, val_targets, test_logits, test_targets, exit_mmacs,
                             budgets)

    def budgeted(rows):
        return [{"budget_mmacs": b["budget"], "accuracy": b["accuracy"], "mmacs": b["flops"],
                 "thresholds": finite_thresholds(b["thresholds"])} for b in rows]

    return {"calibration_temperatures": rep["calibration_temperatures"],
            "ece_unit": rep["ece_unit"], "ece_before": rep["ece_before"],
            "ece_after": rep["ece_after"], "budgeted_before": budgeted(rep["budgeted_before"]),
            "budgeted_after": budgeted(rep["budgeted_after"])}


def method_options(spec, suite_dir: Path, suite_file: str = "<suite>") -> tuple[dict, dict | None]:
    """The run's method options with ``temperature: tuned`` replaced by its study's best
    t_n, and where it came from (None for runs that do not ask for tuning)."""
    options = dict(spec.method_options)
    if options.get("temperature") != "tuned":
        return options, None
    from bench.tune import tuned_temperature
    options["temperature"], source = tuned_temperature(spec, suite_dir, suite_file)
    return options, source


def evaluate_saved(spec, run: Run) -> None:
    """Recompute metrics.json of a finished run from its saved predictions (e.g. when an
    evaluation option was turned on later); nothing is retrained."""
    metrics = compute_metrics(run.load_predictions(), spec.exit_mmacs,
                              spec.budgets_mmacs, _calibration(spec))
    old = run.metrics or {}
    if "tuned_temperature" in old:
        metrics["tuned_temperature"] = old["tuned_temperature"]
    run.write_metrics(metrics)


def metrics_stale(spec, run: Run) -> bool:
    """Whether a finished run's metrics lack an evaluation the suite now asks for."""
    if not _calibration(spec) or not run.has_predictions:
        return False
    return "calibration" not in (run.metrics or {})


def _calibration(spec) -> bool:
    return bool((spec.config.get("evaluation") or {}).get("calibration"))


@dataclass
class RunContext:
    results: Path  # results/<suite slug>/
    data: DataCache
    dist: Dist
    progress: object = None  # bench.progress.Progress or None
    suite_file: str = "<suite>"  # for error messages


def run_one(spec, ctx: RunContext) -> str:
    """Train and evaluate one run; returns its final state ('done' or 'failed')."""
    run = Run(ctx.results / spec.run_id)
    training = spec.config["training"]
    epochs = training["epochs"]
    main = ctx.dist.is_main
    options, tuned = method_options(spec, ctx.results, ctx.suite_file)
    if main:
        extra = {"tuned_temperature": {**tuned, "temperature": options["temperature"]}} \
            if tuned else {}
        run.write_config({"suite": spec.suite_slug, "run_id": spec.run_id, **spec.config,
                          **extra})
        resumed = run.status.get("epoch", 0) if run.checkpoint_path.exists() else 0
        run.set_status("running", epoch=resumed, epochs=epochs)
    try:
        _train_and_evaluate(spec, run, ctx, options, tuned)
    except NonFiniteLoss as err:
        if main:
            run.set_status("failed", epoch=run.checkpoint_epoch(), epochs=epochs,
                           error=str(err))
        return "failed"
    if main:
        run.set_status("done", epoch=epochs, epochs=epochs)
    return "done"


def _train_and_evaluate(spec, run: Run, ctx: RunContext, options: dict,
                        tuned: dict | None) -> None:
    from bench import distributed

    training = spec.config["training"]
    device = pick_device(training["device"], ctx.dist)
    distributed.check_sync_bn(training, device, ctx.dist)
    main = ctx.dist.is_main
    seed_everything(spec.seed)
    splits = ctx.data.get(spec.config["dataset"], spec.seed)
    model = backbones.create(spec.backbone_name, num_classes=spec.num_classes, **spec.overrides)
    if main:
        run.write_environment(environment(device))
        run.write_heldout_index(splits.heldout_indices)
        run.write_costs(spec.exit_mmacs, flops.params_per_exit(model), spec.input_size)
    model = distributed.prepare_model(model, training, device, ctx.dist)
    model.to(device)
    method = methods_registry.create(spec.method_name, **options)
    show = ctx.progress.epoch_callback(spec, run) if ctx.progress else None

    def on_epoch(info: dict) -> None:
        run.set_status("running", epoch=info["epoch"], epochs=training["epochs"])
        if show:
            show(info)

    trainer = Trainer(model, method, splits, training, spec.seed, device,
                      run.checkpoint_path, ctx.dist, on_epoch=on_epoch,
                      wrap=distributed.wrapper(ctx.dist, device),
                      after_epoch=(lambda m: distributed.average_buffers(m, ctx.dist))
                      if ctx.dist.world_size > 1 else None)
    state = trainer.fit()
    preds = {}
    for split in ("heldout", "test"):  # every rank predicts its shard; rank 0 gathers
        logits, targets = distributed.gather_predict(
            model, method, splits, split, training["eval_batch_size"], device, ctx.dist,
            channels_last=trainer.channels_last)
        # Saved as float16 and metrics computed from what was saved, so that a later
        # evaluation from disk gives exactly the same numbers.
        preds[split] = {"logits": logits.half(), "targets": targets.long()}
    if not main:
        return
    run.write_history(state.history)
    run.save_predictions(preds)
    metrics = compute_metrics(preds, spec.exit_mmacs, spec.budgets_mmacs, _calibration(spec))
    if tuned:
        metrics["tuned_temperature"] = {**tuned, "temperature": options["temperature"]}
    run.write_metrics(metrics)
