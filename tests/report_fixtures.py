"""Small results stores for the report tests, written through the store's own writer.

Everything is deterministic: logits come from a seeded generator and metrics.json is
computed from them by the runner's own code (thresholds fitted on the held-out logits), so
the report's recomputations from predictions.pt must agree with it. Only what bench itself
writes ends up on disk.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench import fingerprint, store
from bench.config import Checker, resolve_methods
from bench.evaluate import compute_metrics
from bench.pipeline.setup import environment

DEFAULT_MMACS = (1.0, 2.0, 3.0)
CODE = fingerprint.fingerprint(git=False)  # the current code: fixture runs are not stale
OTHER_CODE = {**CODE, "sha256": "0" * 64, "short": "0" * 10}


def fake_logits(n_exits: int, m: int, classes: int, skill: float, seed: int):
    """Logits [n_exits, m, classes] whose accuracy grows with depth and with ``skill``."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(m) % classes
    logits = torch.randn(n_exits, m, classes, generator=g)
    for n in range(n_exits):
        logits[n, torch.arange(m), targets] += skill * (1 + n) / n_exits * 3
    return logits.half(), targets


def history_rows(epochs: int, n_exits: int, skill: float) -> list[dict]:
    """history.csv rows as the trainer records them, with made-up but plausible values."""
    return [{"epoch": e, "stage": 1, "exit": n, "lr": 0.1,
             "train_loss": round(2.5 - 0.3 * e - 0.1 * n, 4),
             "effective_share": round(0.9 - 0.1 * n - 0.05 * e, 4),
             "heldout_top1": round(20 + 10 * e + 5 * n + skill, 3)}
            for e in range(1, epochs + 1) for n in range(1, n_exits + 1)]


def make_run(suite_dir, run_id: str, *, backbone="tiny3", method="joint", label=None, seed=0,
             state="done", options=None, mmacs=DEFAULT_MMACS, params=(1000, 2000, 3000),
             budgets=(1.5, 2.5), epochs=3, classes=10, m=200, skill=1.0, dataset="synthetic",
             error="RuntimeError: loss is NaN", metrics=None, predictions=True, stale=False,
             rules=None, training=None, evaluation=None, config=None):
    """One run folder; ``state`` done writes everything, failed/running only what they have.

    ``metrics``: write this metrics.json instead of the one computed from the logits (for
    hand-checked numbers); ``predictions=False`` leaves predictions.pt out; ``stale``: made
    by other code than the current; ``rules``: compute_metrics' exit-rule arguments
    (criteria, combiners, global_threshold); ``training``: a training.json record;
    ``evaluation``: config.json's evaluation section; ``config``: config.json keys to
    replace (a full training recipe, say)."""
    code = OTHER_CODE if stale else CODE
    run = store.Suite(suite_dir).run(run_id)
    n_exits = len(mmacs)
    run.write_config({
        "suite": run.path.parent.name, "run_id": run_id, "code_version": "0.1.0",
        "dataset": {"name": dataset, "options": {"num_classes": classes}},
        "num_classes": classes, "input_size": [3, 32, 32],
        "training": {"epochs": epochs, "batch_size": 64},
        "backbone": {"name": backbone, "label": backbone, "overrides": {}},
        "method": {"name": method, "label": label or method, "options": options or {}},
        "seed": seed, "budgets_mmacs": list(budgets),
        "evaluation": evaluation or {"calibration": False}, **(config or {})})
    done_epochs = {"done": epochs, "failed": 1, "running": 1}.get(state, 0)
    run.set_status(state, epoch=done_epochs, epochs=epochs, fingerprint=code["sha256"],
                   error=error if state == "failed" else None)
    run.write_environment(environment(torch.device("cpu"), code))
    run.write_costs(list(mmacs), list(params), [3, 32, 32])
    run.write_history(history_rows(done_epochs, n_exits, skill))
    if state != "done":
        return run.path
    if training is not None:
        run.write_training(training)
    run.write_heldout_index(range(m))
    preds = {}
    for i, split in enumerate(("heldout", "test")):
        logits, targets = fake_logits(n_exits, m, classes, skill, seed * 1000 + i)
        preds[split] = {"logits": logits, "targets": targets}
    if predictions:
        run.save_predictions(preds)
    run.write_metrics(metrics if metrics is not None else
                      compute_metrics(preds, list(mmacs), list(budgets), **(rules or {})))
    return run.path


def method_entries(runs: list[dict]) -> list[dict]:
    """The suite's resolved methods (every option filled, reference variants and the
    paper's curves marked), resolved by the harness's own code as bench run does."""
    raw = list({r.get("label") or r.get("method", "joint"): {
        "name": r.get("method", "joint"), "label": r.get("label") or r.get("method", "joint"),
        "options": r.get("options") or {}} for r in runs}.values())
    return [m.as_dict() for m in resolve_methods(Checker("fixture"), raw)] if raw else []


def make_suite(root, slug: str, runs: list[dict], name: str | None = None,
               planned: int = 0, baseline: str | None = "joint", evaluation: dict | None = None,
               description: str = ""):
    """A suite folder: suite.json, the given runs (kwargs of make_run) and summary.csv.
    ``planned`` runs are in the suite but have no folder yet; ``baseline`` is used where
    the suite has that label; ``evaluation``: suite.json's resolved evaluation section."""
    suite = store.Suite(Path(root) / slug)
    budgets = runs[0].get("budgets", (1.5, 2.5)) if runs else []
    run_ids = [r["run_id"] for r in runs] + [f"planned-{i}" for i in range(planned)]
    methods = method_entries(runs)
    labels = [m["label"] for m in methods]
    suite.write_suite({"name": name or slug, "description": description,
                       "dataset": {"name": "synthetic"},
                       "methods": methods,
                       "budgets": {"mmacs": list(budgets), "fractions": None},
                       "baseline": baseline if baseline in labels else None, "plugins": [],
                       **({"evaluation": evaluation} if evaluation else {})},
                      run_ids)
    options = {m["label"]: m["options"] for m in methods}
    for spec in runs:
        spec = dict(spec)
        spec["options"] = options[spec.get("label") or spec.get("method", "joint")]
        make_run(suite.path, spec.pop("run_id"), **spec)
    suite.write_summary()
    return suite.path


def standard_store(root):
    """Three suites: a finished one (2 seeds, joint/boostnet/ablation/sequential), one with a
    failed run and one still running with a hostile name."""
    runs = []
    for seed in (0, 1):
        for method, label, options, skill in (
                ("joint", "joint", {}, 1.0), ("boostnet", "boostnet", {}, 1.3),
                ("boostnet", "boostnet-no-rescale", {"grad_rescale": False}, 1.2),
                ("sequential", "sequential", {}, 0.8)):
            runs.append({"run_id": f"tiny3-{label}-s{seed}", "method": method, "label": label,
                         "options": options, "seed": seed, "skill": skill})
    make_suite(root, "demo", runs, name="Demo suite")
    make_suite(root, "broken", [
        {"run_id": "tiny3-joint-s0", "method": "joint", "seed": 0},
        {"run_id": "tiny3-boostnet-s0", "method": "boostnet", "seed": 0, "skill": 1.3},
        {"run_id": "tiny3-sequential-s0", "method": "sequential", "seed": 0, "state": "failed"},
    ], name="Broken suite")
    make_suite(root, "wip", [
        {"run_id": "tiny3-joint-s0", "method": "joint", "seed": 0},
        {"run_id": "tiny3-boostnet-s0", "method": "boostnet", "seed": 0, "state": "running"},
    ], name="<script>alert(1)</script> WIP", planned=1)
    return root
