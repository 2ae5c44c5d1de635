"""``bench export``: a finished run packaged as one deployable file, i.e. what goes into
it (bench.export owns the file's format: it writes and loads it).

Everything is plain data and tensors, so the file loads with ``weights_only=True``. The q
curve's points get their mean cost on the held-out split here (from the run's saved
held-out predictions), so that the exported model chooses thresholds for any budget without
looking at the test split.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from bench import export
from bench.data import DatasetNotFound, MissingDependency
from bench.evaluate import assign_exits
from bench.fileio import read_json
from bench.fingerprint import fingerprint
from bench.pipeline.restore import Restored, load_splits, method_options, thresholds_of
from bench.store import files as F
from bench.store import now

log = logging.getLogger("bench.pipeline")


def heldout_mmacs(val_logits: torch.Tensor, thresholds: list[float], exit_mmacs: list[float]
                  ) -> float:
    """Mean cost per image on the held-out split under ``thresholds``."""
    exits = assign_exits(val_logits.float(), thresholds)
    return float(torch.tensor(exit_mmacs, dtype=torch.float64)[exits].mean())


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
            "temperatures": temperatures(r), "input": input_spec(r, data_root),
            "heldout_index_sha256": heldout_index_sha256(r.run.path),
            "code": {"run": r.run.fingerprint,
                     "export": fingerprint(git=False)["sha256"]},
            "run_id": config.get("run_id", r.run.run_id), "config": config}


def package(r: Restored, out: Path, data_root: Path | None = None) -> Path:
    """The restored run ``r`` written as one deployable file at ``out``."""
    return export.save(out, content(r, data_root))
