"""Read-only access to the results store (docs/results-format.md), tolerant of partial stores.

A suite still in progress, a failed run (status.json but no metrics) or a half-written
folder must render with its status, never fail: every file here is optional.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

SUMMARY_COLUMNS = ["suite", "run_id", "backbone", "method", "seed", "status", "kind", "exit",
                   "budget_mmacs", "mmacs", "top1", "top5"]


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def _name(entry: Any, *keys: str) -> str | None:
    """A display name from a config entry that is a plain string or a dict."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        for key in keys:
            if entry.get(key) not in (None, ""):
                return str(entry[key])
    return None


@dataclass
class Run:
    run_id: str
    path: Path

    @cached_property
    def config(self) -> dict:
        return read_json(self.path / "config.json") or {}

    @cached_property
    def status(self) -> dict:
        return read_json(self.path / "status.json") or {}

    @cached_property
    def environment(self) -> dict:
        return read_json(self.path / "environment.json") or {}

    @cached_property
    def costs(self) -> dict:
        return read_json(self.path / "costs.json") or {}

    @cached_property
    def metrics(self) -> dict | None:
        return read_json(self.path / "metrics.json")

    @cached_property
    def history(self) -> pd.DataFrame | None:
        return read_csv(self.path / "history.csv")

    @property
    def state(self) -> str:
        """done | failed | running | pending (no status.json yet)."""
        return str(self.status.get("state") or "pending")

    @property
    def backbone(self) -> str:
        return _name(self.config.get("backbone"), "label", "name") or "?"

    @property
    def backbone_name(self) -> str:
        return _name(self.config.get("backbone"), "name", "label") or "?"

    @property
    def method(self) -> str:
        """The method's label: what tells variants of one method apart (e.g. ablations)."""
        return _name(self.config.get("method"), "label", "name") or "?"

    @property
    def method_name(self) -> str:
        return _name(self.config.get("method"), "name", "label") or "?"

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None

    @property
    def dataset(self) -> str | None:
        return _name(self.config.get("dataset"), "name")

    @property
    def has_predictions(self) -> bool:
        return (self.path / "predictions.pt").is_file()

    def rows(self, suite: str) -> list[dict]:
        """This run's rows of summary.csv, built from metrics.json (empty without metrics)."""
        m = self.metrics or {}
        base = {"suite": suite, "run_id": self.run_id, "backbone": self.backbone,
                "method": self.method, "method_name": self.method_name, "seed": self.seed,
                "status": self.state}
        out = []
        for a in m.get("anytime") or []:
            out.append(base | {"kind": "exit", "exit": a.get("exit"), "budget_mmacs": math.nan,
                               "mmacs": a.get("mmacs"), "top1": a.get("top1"),
                               "top5": a.get("top5")})
        for b in m.get("budgeted") or []:
            out.append(base | {"kind": "budget", "exit": math.nan,
                               "budget_mmacs": b.get("budget_mmacs"), "mmacs": b.get("mmacs"),
                               "top1": b.get("accuracy"), "top5": math.nan})
        return out


@dataclass
class Suite:
    slug: str
    path: Path
    runs: list[Run] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "Suite":
        path = Path(path)
        if not path.is_dir():
            return cls(path.name, path, [])
        runs = [Run(p.name, p) for p in sorted(path.iterdir())
                if p.is_dir() and not p.name.startswith((".", "_"))
                and any((p / f).exists() for f in ("config.json", "status.json"))]
        return cls(path.name, path, runs)

    @cached_property
    def config(self) -> dict:
        return read_json(self.path / "suite.json") or {}

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.slug)

    @property
    def total(self) -> int:
        """Runs the suite expands to: from suite.json where it says, else the run folders."""
        cfg = self.config
        for key in ("total_runs", "num_runs", "n_runs"):
            if isinstance(cfg.get(key), int):
                return max(cfg[key], len(self.runs))
        if isinstance(cfg.get("runs"), list):
            return max(len(cfg["runs"]), len(self.runs))
        # bench.suite: a run is backbone x method x seed
        sizes = [cfg.get(k) for k in ("backbones", "methods", "seeds")]
        if all(isinstance(v, list) for v in sizes):
            return max(math.prod(len(v) for v in sizes), len(self.runs))
        return len(self.runs)

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.runs)

    @property
    def state(self) -> str:
        """A one-word status for the suite: done, failed, running, pending or empty."""
        if not self.runs and not self.total:
            return "empty"
        if self.count("failed"):
            return "failed"
        if self.count("done") == self.total:
            return "done"
        if self.count("running") or self.count("done"):
            return "running"
        return "pending"

    @property
    def status_text(self) -> str:
        parts = [f"{self.count('done')}/{self.total} runs done"]
        for state in ("failed", "running"):
            if self.count(state):
                parts.append(f"{self.count(state)} {state}")
        return ", ".join(parts)

    @property
    def date(self) -> str | None:
        """The newest time any run reports (status updated, or environment date)."""
        stamps = [str(r.status.get("updated") or r.environment.get("date") or "")
                  for r in self.runs]
        stamps = [s for s in stamps if s]
        return max(stamps) if stamps else None

    @property
    def backbones(self) -> list[str]:
        return _unique(r.backbone for r in self.runs)

    @property
    def methods(self) -> list[str]:
        return _unique(r.method for r in self.runs)

    def runs_of(self, backbone: str | None = None, method: str | None = None,
                state: str | None = None) -> list[Run]:
        return [r for r in self.runs
                if (backbone is None or r.backbone == backbone)
                and (method is None or r.method == method)
                and (state is None or r.state == state)]

    def baseline(self) -> str | None:
        """The joint baseline's label: 'joint' if present, else the first joint-trained run."""
        labels = self.methods
        if "joint" in labels:
            return "joint"
        for r in self.runs:
            if r.method_name == "joint":
                return r.method
        return None

    @cached_property
    def rows(self) -> pd.DataFrame:
        """Per-run rows of summary.csv (kind exit or budget) for finished runs.

        Built from each run's metrics.json, the source of truth; summary.csv is the fallback
        for rows of runs whose folders hold no metrics.
        """
        rows = [row for r in self.runs if r.metrics for row in r.rows(self.slug)]
        df = pd.DataFrame(rows)
        have = {r.run_id for r in self.runs if r.metrics}
        summary = read_csv(self.path / "summary.csv")
        if summary is not None and len(summary) and "run_id" in summary:
            extra = summary[~summary["run_id"].astype(str).isin(have)].copy()
            if len(extra):
                extra["method_name"] = extra.get("method")
                df = pd.concat([df, extra], ignore_index=True) if len(df) else extra
        if not len(df):
            return pd.DataFrame(columns=SUMMARY_COLUMNS + ["method_name"])
        df = df[df["kind"].isin(["exit", "budget"])]
        if "status" in df:
            df = df[df["status"].fillna("done").astype(str) == "done"]
        for col in ("exit", "budget_mmacs", "mmacs", "top1", "top5", "seed"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        return df.reset_index(drop=True)


def _unique(items) -> list:
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def list_suites(results_root: Path) -> list[Path]:
    """Suite folders of a results root: the folders holding suite.json or run folders."""
    root = Path(results_root)
    if not root.is_dir():
        return []
    return [p for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith((".", "_"))
            and ((p / "suite.json").exists() or (p / "summary.csv").exists()
                 or any((c / "config.json").exists() for c in p.iterdir() if c.is_dir()))]
