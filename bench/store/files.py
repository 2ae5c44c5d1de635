"""File names of the results store and the tolerant readers every view uses.

The layout (docs/results-format.md)::

    results/<suite slug>/suite.json, summary.csv, tuning/
    results/<suite slug>/<run id>/config.json, status.json, environment.json, costs.json,
                                  history.csv, heldout_index.json, predictions.pt,
                                  metrics.json, checkpoint.pt
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench.fileio import read_json

# Suite folder
SUITE = "suite.json"
SUMMARY = "summary.csv"
SUMMARY_LOCK = ".summary.lock"
TUNING = "tuning"
OPTUNA_DB = "optuna.db"

# Run folder
CONFIG = "config.json"
STATUS = "status.json"
ENVIRONMENT = "environment.json"
COSTS = "costs.json"
HISTORY = "history.csv"
HELDOUT_INDEX = "heldout_index.json"
PREDICTIONS = "predictions.pt"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
TRAINING = "training.json"  # training cost (passes per step, time, memory), where recorded
RUN_LOCK = ".lock"
PREVIOUS = "previous"  # outputs of a stale run moved aside by --rerun-stale

RUN_FILES = (CONFIG, STATUS, ENVIRONMENT, COSTS, HISTORY, HELDOUT_INDEX, PREDICTIONS,
             METRICS, CHECKPOINT)

# One row per (run, exit rule, fit, exit or budget): Suite.rule_rows, the leaderboard's data.
RULE_COLUMNS = ["run_id", "backbone", "method", "method_name", "seed", "rule", "combiner",
                "criterion", "fit", "kind", "point", "mmacs", "top1"]
SUMMARY_COLUMNS = ["suite", "run_id", "backbone", "method", "seed", "status", "kind", "exit",
                   "budget_mmacs", "mmacs", "top1", "top5"]
COST_COUNTER = "fvcore multiply-adds (MACs)"


def now() -> str:
    """The time stamps of the store: UTC, ISO 8601, whole seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_json_or(path: Path, default: Any) -> Any:
    """The parsed file, or ``default`` when it is missing or unreadable (a suite in progress,
    a failed run or a half-written folder must still be shown)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return default


def read_csv_or_none(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def is_entry_dir(path: Path) -> bool:
    """A folder that may be a suite or a run (hidden and ``_private`` folders are not)."""
    return path.is_dir() and not path.name.startswith((".", "_"))
