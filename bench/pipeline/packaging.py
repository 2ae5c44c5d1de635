"""``bench export``: a finished run packaged as one deployable file (``--format pt``) or as
a folder of ONNX stage graphs with a manifest (``--format onnx``), i.e. what goes into them
(bench.export owns both formats: it writes and loads them).

Everything is plain data and tensors, so the file loads with ``weights_only=True``. The q
curve's points get their mean cost and exit shares on the held-out split here (from the
run's saved held-out predictions), so that the exported model chooses thresholds for any
budget, in MMACs or in measured ms, without looking at the test split. The latency the run
has measured (latency.json, per runtime, device, batch size and threads) goes with it as
per-exit ms, and the fixed ms budgets the suite's evaluation fitted (metrics.json's
``budgeted_ms``).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from bench import export
from bench.data import DatasetNotFound, MissingDependency
from bench.errors import UsageError
from bench.evaluate import assign_exits
from bench.fileio import read_json
from bench.fingerprint import fingerprint
from bench.inference import early_exit
from bench.pipeline.restore import Restored, load_splits, method_options, thresholds_of
from bench.store import files as F
from bench.store import now
from bench.store.latency import exit_costs_ms, measurements

log = logging.getLogger("bench.pipeline")
AGREEMENT_IMAGES = 256  # test images bench export --format onnx checks against PyTorch


def heldout_mmacs(val_logits: torch.Tensor, thresholds: list[float], exit_mmacs: list[float]
                  ) -> float:
    """Mean cost per image on the held-out split under ``thresholds``."""
    exits = assign_exits(val_logits.float(), thresholds)
    return float(torch.tensor(exit_mmacs, dtype=torch.float64)[exits].mean())


def heldout_exit_shares(val_logits: torch.Tensor, thresholds: list[float]) -> list[float]:
    """Share of held-out images leaving at each exit under ``thresholds``: with any
    per-exit cost c_n, the held-out mean cost is sum_n share_n c_n."""
    exits = assign_exits(val_logits.float(), thresholds)
    counts = torch.bincount(exits, minlength=val_logits.shape[0]).double()
    return (counts / max(len(exits), 1)).tolist()


def latency_tables(r: Restored) -> list[dict]:
    """Per measurement of latency.json (runtime, device, batch size, threads): the mean ms
    per image of every exit (every image run to it), with when and where."""
    tables = []
    for m in measurements(r.run.latency):
        exits = m.get("exits") or []
        if len(exits) != r.model.num_exits:
            continue
        tables.append({"runtime": m.get("runtime", "pytorch"), "device": m.get("device"),
                       "batch_size": m.get("batch_size"), "threads": m.get("threads"),
                       "date": m.get("date"), "cpu": (m.get("machine") or {}).get("cpu"),
                       "gpu": (m.get("machine") or {}).get("gpu"),
                       "exit_ms": exit_costs_ms(m)})
    return tables


def ms_budgets(r: Restored) -> list[dict]:
    """metrics.json's fixed ms budgets, each with the latency its thresholds were fitted on."""
    section = (r.run.metrics or {}).get("budgeted_ms") or {}
    latency = {k: v for k, v in (section.get("latency") or {}).items() if k != "exit_ms"}
    return [{"budget_ms": float(b["budget_ms"]), "thresholds": thresholds_of(b),
             "q": b.get("q"), "heldout_ms": b.get("heldout_ms"),
             "test_accuracy": b.get("accuracy"), "test_ms": b.get("ms"), "latency": latency}
            for b in section.get("budgets") or []]


def heldout_index_sha256(run_path: Path) -> str | None:
    """sha256 of the held-out indices (JSON, no spaces), or None where they are missing."""
    try:
        indices = read_json(run_path / F.HELDOUT_INDEX)["indices"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return hashlib.sha256(json.dumps(indices, separators=(",", ":")).encode()).hexdigest()


def input_spec(r: Restored, data_root: Path | None) -> dict:
    """The input the network expects: size, and the normalization of the training data
    (None where the data set is not on this machine: the file says so)."""
    spec = {"size": list(r.config.get("input_size") or r.model.input_size),
            "mean": None, "std": None, "scale": "pixels / 255, then (x - mean) / std"}
    try:
        splits = load_splits(r.config, r.run.path, data_root)
    except (DatasetNotFound, MissingDependency, ValueError) as err:
        log.warning("the export records no input normalization: %s", err)
        return spec
    spec.update(mean=list(getattr(splits, "mean", ()) or []) or None,
                std=list(getattr(splits, "std", ()) or []) or None)
    return spec


def class_names(r: Restored) -> list[str]:
    """The classes' names where the run's config has them, else their indices as text."""
    names = r.config.get("class_names")
    if isinstance(names, list) and len(names) == r.config["num_classes"]:
        return [str(n) for n in names]
    return [str(i) for i in range(r.config["num_classes"])]


def temperatures(r: Restored) -> dict:
    """BoostNet-style ensemble temperatures t_n of the method (where it has them) and the
    post-hoc calibration temperatures of metrics.json (where the suite asked for them)."""
    ensemble = (r.method.temperatures(r.model.num_exits)
                if hasattr(r.method, "temperatures") else None)
    calibration = ((r.run.metrics or {}).get("calibration") or {}).get(
        "calibration_temperatures")
    return {"ensemble": ensemble, "calibration": calibration}


def content(r: Restored, data_root: Path | None = None) -> dict:
    """What ``bench export`` writes (docs/deploy.md), but the format and the checksum that
    bench.export.save stamps on it."""
    val_logits = r.run.load_predictions()["heldout"]["logits"]
    metrics = r.run.metrics or {}
    budgets = [{"budget_mmacs": float(b["budget_mmacs"]), "thresholds": thresholds_of(b),
                "q": b.get("q"), "heldout_mmacs": b.get("heldout_mmacs"),
                "test_accuracy": b.get("accuracy"), "test_mmacs": b.get("mmacs")}
               for b in r.budgets]
    curve = [{"q": c["q"], "thresholds": [float(t) for t in c["thresholds"]],
              "heldout_mmacs": heldout_mmacs(val_logits, c["thresholds"], r.exit_mmacs),
              "heldout_exit_shares": heldout_exit_shares(val_logits, c["thresholds"]),
              "test_accuracy": c.get("accuracy"), "test_mmacs": c.get("mmacs")}
             for c in metrics.get("curve") or []]
    config = r.config
    return {"created": now(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in r.model.state_dict().items()},
            "backbone": {"name": config["backbone"]["name"],
                         "overrides": config["backbone"].get("overrides") or {}},
            "num_classes": config["num_classes"],
            "method": {"name": config["method"]["name"], "options": method_options(config)},
            "exit_mmacs": list(r.exit_mmacs), "budgets": budgets, "curve": curve,
            "budgets_ms": ms_budgets(r), "latency": latency_tables(r),
            "class_names": class_names(r),
            "temperatures": temperatures(r), "input": input_spec(r, data_root),
            "heldout_index_sha256": heldout_index_sha256(r.run.path),
            "code": {"run": r.run.fingerprint,
                     "export": fingerprint(git=False)["sha256"]},
            "run_id": config.get("run_id", r.run.run_id), "config": config}


def package(r: Restored, out: Path, data_root: Path | None = None, fmt: str = "pt",
            exporter: str = "torchscript") -> Path:
    """The restored run ``r`` written as one deployable file (``fmt`` pt) or as a folder
    of ONNX stage graphs with manifest.json (onnx; ``exporter``: torch's exporter) at
    ``out``."""
    if fmt not in export.FORMATS:
        raise UsageError(f"--format must be one of {', '.join(export.FORMATS)}, got {fmt!r}")
    if fmt == "pt":
        return export.save(out, content(r, data_root))
    return export.save_onnx(out, content(r, data_root), r.model, r.method.combine,
                            exporter=exporter)


def agreement(r: Restored, model, images: torch.Tensor, batch: int = 64) -> dict:
    """The exported ONNX model against the run's PyTorch model on ``images`` (in batches of
    ``batch``): per fixed budget (and every image to the last exit) the share of images
    with the same exit and class (1.0 expected), and the largest difference of F_n over
    every exit."""
    budgets = [None] + [float(b["budget_mmacs"]) for b in r.budgets]
    same = [[] for _ in budgets]  # per budget, per batch: [B] bool
    diff = 0.0
    for x in images.split(batch):
        with torch.no_grad():
            want = r.method.combine(r.model(x))
        diff = max([diff] + [float((a.float() - b.float()).abs().max())
                             for a, b in zip(want, model(x))])
        for budget, agree in zip(budgets, same):
            mine = early_exit(r.model, r.method.combine, model.thresholds(budget), x)
            theirs = model.predict(x, budget_mmacs=budget)
            agree.append((mine[0] == theirs[0]) & (mine[1] == theirs[1]))
    names = ["last exit" if b is None else f"{b:.4g} MMACs" for b in budgets]
    shares = {n: float(torch.cat(a).double().mean()) for n, a in zip(names, same)}
    return {"images": len(images), "agreement": shares, "max_abs_logit_difference": diff}


def test_images(r: Restored, data_root: Path | None, count: int) -> torch.Tensor | None:
    """The first ``count`` test images of the run's data, or None where the data set is
    not on this machine."""
    try:
        splits = load_splits(r.config, r.run.path, data_root)
    except (DatasetNotFound, MissingDependency, ValueError) as err:
        log.warning("the export's agreement with PyTorch is not checked: %s", err)
        return None
    xs, have = [], 0
    for x, _ in splits.batches("test", 256):
        xs.append(x.cpu())
        have += len(x)
        if have >= count:
            break
    return torch.cat(xs)[:count] if xs else None
