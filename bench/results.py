"""The on-disk results store (docs/results-format.md): atomic writes, run status, summary."""
from __future__ import annotations

import json
import os
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

SUMMARY_COLUMNS = ["suite", "run_id", "backbone", "method", "seed", "status", "kind", "exit",
                   "budget_mmacs", "mmacs", "top1", "top5"]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=1, allow_nan=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_torch(path: Path, obj: Any) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


def load_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=False)


class RunDir:
    """One run's folder, ``results/<suite>/<run_id>/``."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def status(self) -> dict:
        f = self.file("status.json")
        return read_json(f) if f.exists() else {"state": "new"}

    def set_status(self, state: str, *, epoch: int, epochs: int, error: str | None = None):
        write_json(self.file("status.json"), {
            "state": state, "error": error, "epoch": epoch, "epochs": epochs,
            "updated": now(), "worker": f"{socket.gethostname()}:{os.getpid()}"})

    def is_done(self) -> bool:
        return self.status().get("state") == "done" and self.file("metrics.json").exists()


def summary_rows(run: RunDir, suite: str) -> list[dict]:
    """summary.csv rows of one run: one per exit and one per budget."""
    config = read_json(run.file("config.json"))
    base = {"suite": suite, "run_id": config["run_id"], "backbone": config["backbone"]["label"],
            "method": config["method"]["label"], "seed": config["seed"],
            "status": run.status().get("state")}
    if not run.file("metrics.json").exists():
        return [{**base, "kind": "run"}]
    metrics = read_json(run.file("metrics.json"))
    rows = [{**base, "kind": "exit", "exit": a["exit"], "mmacs": a["mmacs"], "top1": a["top1"],
             "top5": a["top5"]} for a in metrics["anytime"]]
    rows += [{**base, "kind": "budget", "budget_mmacs": b["budget_mmacs"], "mmacs": b["mmacs"],
              "top1": b["accuracy"]} for b in metrics["budgeted"]]
    return rows


def write_summary(suite_dir: Path, suite: str) -> Path:
    """Rebuild ``summary.csv`` from every run folder that has a config."""
    rows = []
    for config in sorted(Path(suite_dir).glob("*/config.json")):
        rows += summary_rows(RunDir(config.parent), suite)
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    path = Path(suite_dir) / "summary.csv"
    write_text(path, frame.to_csv(index=False))
    return path
