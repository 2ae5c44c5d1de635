"""Build small results stores exactly as docs/results-format.md describes (for report tests).

Everything is deterministic: logits come from a seeded generator, and metrics.json is
computed from those logits (anytime accuracy per exit, budgets and the q-curve from
thresholds), so the report's recomputations from predictions.pt must agree with it.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

SUMMARY_COLUMNS = ["suite", "run_id", "backbone", "method", "seed", "status", "kind", "exit",
                   "budget_mmacs", "mmacs", "top1", "top5"]
DATE = "2026-11-28T12:00:00+00:00"


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="tmp-", suffix=path.suffix)
    os.close(fd)
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    _atomic(Path(path), lambda t: Path(t).write_text(json.dumps(obj, indent=2)))


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    def w(t):
        with open(t, "w", newline="") as f:
            out = csv.DictWriter(f, columns)
            out.writeheader()
            for r in rows:
                out.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    _atomic(Path(path), w)


def fake_logits(n_exits: int, m: int, classes: int, skill: float, seed: int):
    """Logits [n_exits, m, classes] whose accuracy grows with depth and with ``skill``."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(m) % classes
    logits = torch.randn(n_exits, m, classes, generator=g)
    for n in range(n_exits):
        logits[n, torch.arange(m), targets] += skill * (1 + n) / n_exits * 3
    return logits.half(), targets


def assign(conf: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """Exit (0-based) of every image: the first whose max softmax >= its threshold.

    conf: [N_exits, M] max softmax per exit and image."""
    n_exits, m = conf.shape
    out = np.full(m, n_exits - 1)
    done = np.zeros(m, bool)
    for n in range(n_exits - 1):
        hit = ~done & (conf[n] >= thresholds[n])
        out[hit] = n
        done |= hit
    return out


def evaluate(logits, targets, thresholds, mmacs):
    lg = logits.float().numpy()
    e = np.exp(lg - lg.max(-1, keepdims=True))
    conf = (e / e.sum(-1, keepdims=True)).max(-1)  # [N, M] max softmax
    ex = assign(conf, thresholds)
    pred = lg.argmax(-1)  # [N, M]
    correct = pred[ex, np.arange(len(ex))] == targets.numpy()
    shares = np.bincount(ex, minlength=len(mmacs)) / len(ex)
    return {"accuracy": float(correct.mean() * 100), "mmacs": float(np.dot(shares, mmacs)),
            "thresholds": [float(t) for t in thresholds],
            "exit_shares": [float(s) for s in shares]}


def make_run(suite_dir: Path, run_id: str, *, backbone="tiny3", method="joint", label=None,
             seed=0, state="done", options=None, mmacs=(1.0, 2.0, 3.0),
             params=(1000, 2000, 3000), budgets=(1.5, 2.5), epochs=3, classes=10, m=200,
             skill=1.0, dataset="synthetic", error="RuntimeError: loss is NaN",
             code_version="0.1.0+test", metrics=None, predictions=True) -> Path:
    """One run folder; ``state`` done writes everything, failed/running only what they have.

    ``metrics``: write this metrics.json instead of the one computed from the logits (for
    hand-checked numbers); ``predictions=False`` leaves predictions.pt out."""
    d = Path(suite_dir) / run_id
    n_exits = len(mmacs)
    label = label or method
    config = {"suite": Path(suite_dir).name, "run_id": run_id,
              "backbone": {"name": backbone, "label": backbone, "overrides": {}},
              "method": {"name": method, "label": label, "options": options or {}},
              "seed": seed, "dataset": {"name": dataset, "num_classes": classes},
              "training": {"epochs": epochs, "batch_size": 64, "lr": 0.1},
              "budgets_mmacs": list(budgets), "code_version": code_version}
    write_json(d / "config.json", config)
    done_epochs = {"done": epochs, "failed": 1, "running": 1}.get(state, 0)
    write_json(d / "status.json", {"state": state, "error": error if state == "failed" else None,
                                   "epoch": done_epochs, "epochs": epochs, "updated": DATE,
                                   "worker": "test-host:1"})
    write_json(d / "environment.json", {
        "torch": torch.__version__, "torchvision": None, "python": "3.11.7", "device": "cpu",
        "code_version": code_version, "git_commit": None, "date": DATE, "threads": 1,
        "hostname": "test-host"})
    write_json(d / "costs.json", {"mmacs": list(mmacs), "params": list(params),
                                  "counter": "fvcore multiply-adds (MACs)",
                                  "input_size": [3, 32, 32]})
    hist = []
    for e in range(1, done_epochs + 1):
        for n in range(1, n_exits + 1):
            hist.append({"epoch": e, "stage": 1, "exit": n, "lr": 0.1,
                         "train_loss": round(2.5 - 0.3 * e - 0.1 * n, 4),
                         "effective_share": round(0.9 - 0.1 * n - 0.05 * e, 4),
                         "heldout_top1": round(20 + 10 * e + 5 * n + skill, 3)})
    write_csv(d / "history.csv", ["epoch", "stage", "exit", "lr", "train_loss",
                                  "effective_share", "heldout_top1"], hist)
    if state != "done":
        return d
    write_json(d / "heldout_index.json", {"indices": list(range(m))})
    if metrics is not None:
        write_json(d / "metrics.json", metrics)
        return d
    preds = {}
    for i, split in enumerate(("heldout", "test")):
        logits, targets = fake_logits(n_exits, m, classes, skill, seed * 1000 + i)
        preds[split] = {"logits": logits, "targets": targets}
    if predictions:
        _atomic(d / "predictions.pt", lambda t: torch.save(preds, t))

    def anytime(split):
        lg, tg = preds[split]["logits"].float(), preds[split]["targets"]
        out = []
        for n in range(n_exits):
            top5 = lg[n].topk(min(5, classes), -1).indices.eq(tg[:, None]).any(-1)
            out.append({"exit": n + 1, "mmacs": mmacs[n],
                        "top1": float(lg[n].argmax(-1).eq(tg).float().mean() * 100),
                        "top5": float(top5.float().mean() * 100)})
        return out

    test = preds["test"]
    budgeted = []
    for b in budgets:  # a crude threshold per budget: lower budget -> lower thresholds
        t = min(0.95, 0.1 + 0.8 * (b - mmacs[0]) / max(mmacs[-1] - mmacs[0], 1e-9))
        budgeted.append({"budget_mmacs": b} | evaluate(test["logits"], test["targets"],
                                                       [t] * n_exits, mmacs))
    curve = []
    for q in np.linspace(0.05, 1.95, 39):
        t = float(q) / 2
        curve.append({"q": round(float(q), 2)} | evaluate(test["logits"], test["targets"],
                                                          [t] * n_exits, mmacs))
    write_json(d / "metrics.json", {"anytime": anytime("test"),
                                    "heldout_anytime": anytime("heldout"),
                                    "budgeted": budgeted, "curve": curve})
    return d


def make_suite(root: Path, slug: str, runs: list[dict], name: str | None = None,
               suite_extra: dict | None = None) -> Path:
    """A suite folder with suite.json, the given runs (kwargs of make_run) and summary.csv."""
    d = Path(root) / slug
    d.mkdir(parents=True, exist_ok=True)
    budgets = runs[0].get("budgets", (1.5, 2.5)) if runs else []
    write_json(d / "suite.json", {"name": name or slug, "dataset": {"name": "synthetic"},
                                  "budgets_mmacs": list(budgets), **(suite_extra or {})})
    rows = []
    for spec in runs:
        spec = dict(spec)
        run_id = spec.pop("run_id")
        rd = make_run(d, run_id, **spec)
        cfg = json.loads((rd / "config.json").read_text())
        status = json.loads((rd / "status.json").read_text())["state"]
        base = {"suite": slug, "run_id": run_id, "backbone": cfg["backbone"]["label"],
                "method": cfg["method"]["label"], "seed": cfg["seed"], "status": status}
        if (rd / "metrics.json").exists():
            met = json.loads((rd / "metrics.json").read_text())
            for a in met["anytime"]:
                rows.append(base | {"kind": "exit", "exit": a["exit"], "mmacs": a["mmacs"],
                                    "top1": a["top1"], "top5": a["top5"]})
            for b in met["budgeted"]:
                rows.append(base | {"kind": "budget", "budget_mmacs": b["budget_mmacs"],
                                    "mmacs": b["mmacs"], "top1": b["accuracy"]})
    write_csv(d / "summary.csv", SUMMARY_COLUMNS, rows)
    return d


def standard_store(root: Path) -> Path:
    """Three suites: a finished one (2 seeds, joint/boostnet/ablation/sequential), one with a
    failed run and one still running with a hostile name."""
    root = Path(root)
    runs = []
    for seed in (0, 1):
        for method, label, skill in (("joint", "joint", 1.0), ("boostnet", "boostnet", 1.3),
                                     ("boostnet", "boostnet-no-rescale", 1.2),
                                     ("sequential", "sequential", 0.8)):
            runs.append({"run_id": f"tiny3-{label}-s{seed}", "method": method, "label": label,
                         "seed": seed, "skill": skill})
    make_suite(root, "demo", runs, name="Demo suite")
    make_suite(root, "broken", [
        {"run_id": "tiny3-joint-s0", "method": "joint", "seed": 0},
        {"run_id": "tiny3-boostnet-s0", "method": "boostnet", "seed": 0, "skill": 1.3},
        {"run_id": "tiny3-sequential-s0", "method": "sequential", "seed": 0, "state": "failed"},
    ], name="Broken suite")
    make_suite(root, "wip", [
        {"run_id": "tiny3-joint-s0", "method": "joint", "seed": 0},
        {"run_id": "tiny3-boostnet-s0", "method": "boostnet", "seed": 0, "state": "running"},
    ], name="<script>alert(1)</script> WIP", suite_extra={"total_runs": 3})
    return root
