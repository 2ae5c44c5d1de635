"""File names of the results store, the tolerant readers every view uses, and what is done
with broken files (reported in one line, set aside, never deleted).

The layout (docs/results-format.md)::

    results/<suite slug>/suite.json, summary.csv, tuning/
    results/<suite slug>/<run id>/config.json, status.json, environment.json, costs.json,
                                  history.csv, training.json, heldout_index.json,
                                  predictions.pt, metrics.json, checkpoint.pt,
                                  latency.json
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench.fileio import fsync_dir, read_json
from bench.store import schema

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
TRAINING = "training.json"  # what training cost: passes per step, seconds, memory
HELDOUT_INDEX = "heldout_index.json"
PREDICTIONS = "predictions.pt"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
LATENCY = "latency.json"  # bench latency: measured time per image, real exits
RUN_LOCK = ".lock"
PREVIOUS = "previous"  # outputs of a stale run moved aside by --rerun-stale

RUN_FILES = (CONFIG, STATUS, ENVIRONMENT, COSTS, HISTORY, TRAINING, HELDOUT_INDEX,
             PREDICTIONS, METRICS, CHECKPOINT, LATENCY)

# One row per (run, exit rule, fit, exit or budget): Suite.rule_rows, the leaderboard's data.
RULE_COLUMNS = ["run_id", "backbone", "method", "method_name", "seed", "rule", "combiner",
                "criterion", "fit", "kind", "point", "mmacs", "top1"]
SUMMARY_COLUMNS = ["suite", "run_id", "backbone", "method", "seed", "status", "kind", "exit",
                   "budget_mmacs", "mmacs", "top1", "top5"]
COST_COUNTER = "fvcore multiply-adds (MACs)"


def now() -> str:
    """The time stamps of the store: UTC, ISO 8601, whole seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stamp() -> str:
    """A UTC time for file names: ``20261128T150712Z``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# -- problems: files that exist but cannot be read ------------------------------------
# Views (summary, tables, report) leave such a file out and say so in one line through this
# logger; the command line prints its warnings (bench.cli). Nothing falls back silently.
log = logging.getLogger("bench.store")


def report_unreadable(path: Path, reason: str, consequence: str) -> None:
    log.warning("%s is unreadable (%s); %s", path, reason, consequence)


def json_problem(path: Path, spec: Any = dict) -> tuple[Any, str | None]:
    """(the parsed file, None), or (None, why it cannot be used: it does not parse, or does
    not hold what ``spec`` says, see bench.store.schema); a missing file is (None, None):
    absent is not broken."""
    try:
        value = read_json(path)
    except FileNotFoundError:
        return None, None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"invalid JSON: {err}"
    except (OSError, ValueError) as err:
        return None, f"cannot read: {err}"
    why = schema.problem(value, spec)
    if why:
        return None, f"unexpected content: {why}"
    return value, None


def read_json_or(path: Path, default: Any, consequence: str = "read as empty",
                 spec: Any = dict) -> Any:
    """The parsed file, or ``default`` when it is missing or unreadable (a suite in
    progress, a failed run or a half-written folder must still be shown); an unreadable
    file is reported in one line."""
    value, problem = json_problem(path, spec)
    if problem:
        report_unreadable(path, problem, consequence)
    return default if value is None else value


def csv_problem(path: Path, columns: tuple[str, ...], numeric: tuple[str, ...] = ()
                ) -> tuple[pd.DataFrame | None, str | None]:
    """Like :func:`json_problem` for a CSV file that must have ``columns``, and numbers (or
    empty cells) in the ``numeric`` ones it has."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        return None, None
    except pd.errors.EmptyDataError:
        return None, "empty file, not even a header"
    except OSError as err:
        return None, f"cannot read: {err}"
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except (ValueError, pd.errors.ParserError) as err:
        return None, f"invalid CSV: {(str(err).strip().splitlines() or [''])[0][:200]}"
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        return None, f"no column {', '.join(missing)}"
    for column in numeric:
        if column not in frame.columns or pd.api.types.is_numeric_dtype(frame[column]):
            continue
        bad = (pd.to_numeric(frame[column], errors="coerce").isna()
               & frame[column].notna()).to_numpy().nonzero()[0]
        if len(bad):
            row = int(bad[0])
            return None, f"unexpected content: column {column} holds " \
                         f"{schema.found(frame[column].iloc[row])} (line {row + 2}), " \
                         "expected numbers"
    return frame, None


def read_csv_or_none(path: Path, columns: tuple[str, ...] = (), numeric: tuple[str, ...] = (),
                     consequence: str = "left out") -> pd.DataFrame | None:
    frame, problem = csv_problem(path, columns, numeric)
    if problem:
        report_unreadable(path, problem, consequence)
    return frame


def set_aside(path: Path) -> Path:
    """Rename a broken file to ``<name>.corrupt-<UTC time>`` beside it (never deleted)."""
    path = Path(path)
    target = path.with_name(f"{path.name}.corrupt-{stamp()}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp()}-{n}")
    path.rename(target)
    fsync_dir(path.parent)
    return target


def is_entry_dir(path: Path) -> bool:
    """A folder that may be a suite or a run (hidden and ``_private`` folders are not)."""
    return path.is_dir() and not path.name.startswith((".", "_"))
