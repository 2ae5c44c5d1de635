"""One run folder, ``results/<suite>/<run_id>/``: the only code that names its files and keys.

Reading is tolerant (a missing or unreadable file reads as empty, so partial folders still
render); writing is atomic (bench.fileio). The runner writes through the ``write_*`` and
``save_*`` methods, the report and ``bench results`` read through the properties.
"""
from __future__ import annotations

import math
import os
import socket
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from bench.fileio import load_torch, save_torch, write_json, write_text
from bench.store import files as F
from bench.store import rules as R


def _name(entry: Any, *keys: str) -> str | None:
    """A display name from a config entry (a dict, or a plain string in old stores)."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        for key in keys:
            if entry.get(key) not in (None, ""):
                return str(entry[key])
    return None


class Run:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.run_id = self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------
    @cached_property
    def config(self) -> dict:
        return F.read_json_or(self.file(F.CONFIG), {}) or {}

    @cached_property
    def status(self) -> dict:
        return F.read_json_or(self.file(F.STATUS), {}) or {}

    @cached_property
    def environment(self) -> dict:
        return F.read_json_or(self.file(F.ENVIRONMENT), {}) or {}

    @cached_property
    def costs(self) -> dict:
        return F.read_json_or(self.file(F.COSTS), {}) or {}

    @cached_property
    def metrics(self) -> dict | None:
        return F.read_json_or(self.file(F.METRICS), None)

    @cached_property
    def history(self) -> pd.DataFrame | None:
        return F.read_csv_or_none(self.file(F.HISTORY))

    @cached_property
    def training(self) -> dict:
        """training.json, the run's training cost (``forward_passes_per_step``,
        ``backward_passes_per_step``, ``seconds_per_epoch``, ``epochs_per_stage``,
        ``peak_memory_mb``), or {} where it was not recorded."""
        value = F.read_json_or(self.file(F.TRAINING), {})
        return value if isinstance(value, dict) else {}

    @property
    def rules(self) -> list[dict]:
        """The exit-rule entries of metrics.json (bench.store.rules); older metrics read as
        the default rule alone."""
        return R.entries(self.metrics)

    def refresh(self) -> "Run":
        """Forget what was read (another worker may have written since)."""
        for key in ("config", "status", "environment", "costs", "metrics", "history",
                    "training"):
            self.__dict__.pop(key, None)
        return self

    @property
    def state(self) -> str:
        """done | failed | running | pending (no status.json yet)."""
        return str(self.status.get("state") or "pending")

    def is_done(self) -> bool:
        """Finished: status done and metrics written (read fresh from disk)."""
        self.refresh()
        return self.state == "done" and self.file(F.METRICS).exists()

    @property
    def fingerprint(self) -> str | None:
        """The code fingerprint (sha256) of the process that last wrote the status."""
        return self.status.get("fingerprint")

    def made_by_other_code(self, current: str) -> bool:
        """Whether the run was (last) written by code other than ``current`` (a run with a
        status but no fingerprint was made before fingerprints were recorded)."""
        return bool(self.status) and self.fingerprint != current

    def is_stale(self, current: str) -> bool:
        """A finished run made by code other than ``current``."""
        return self.state == "done" and self.made_by_other_code(current)

    @property
    def backbone(self) -> str:
        """The backbone's label (what tells entries of one backbone apart)."""
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
    def method_options(self) -> dict:
        method = self.config.get("method")
        return (method.get("options") or {}) if isinstance(method, dict) else {}

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None

    @property
    def dataset(self) -> str | None:
        return _name(self.config.get("dataset"), "name")

    @property
    def has_predictions(self) -> bool:
        return self.file(F.PREDICTIONS).is_file()

    def summary_rows(self, suite: str) -> list[dict]:
        """This run's rows of summary.csv: one per exit and one per budget (one row of kind
        ``run`` while it has no metrics)."""
        base = {"suite": suite, "run_id": self.config.get("run_id", self.run_id),
                "backbone": self.backbone, "method": self.method, "seed": self.seed,
                "status": self.state}
        if self.metrics is None:
            return [{**base, "kind": "run"}]
        rows = [{**base, "kind": "exit", "exit": a.get("exit"), "budget_mmacs": math.nan,
                 "mmacs": a.get("mmacs"), "top1": a.get("top1"), "top5": a.get("top5")}
                for a in self.metrics.get("anytime") or []]
        rows += [{**base, "kind": "budget", "exit": math.nan,
                  "budget_mmacs": b.get("budget_mmacs"), "mmacs": b.get("mmacs"),
                  "top1": b.get("accuracy"), "top5": math.nan}
                 for b in self.metrics.get("budgeted") or []]
        return rows

    def rule_rows(self) -> list[dict]:
        """One row per (exit rule, threshold fit, budget) and per (combiner, exit): the
        rule's test top-1 % (columns F.RULE_COLUMNS; exits have fit and criterion empty).
        Empty without metrics."""
        base = {"run_id": self.config.get("run_id", self.run_id), "backbone": self.backbone,
                "method": self.method, "method_name": self.method_name, "seed": self.seed}
        rows, combiners = [], set()
        for e in self.rules:
            combiner = R.combiner_label(str(e.get("combiner")), e.get("combiner_options"))
            label = R.entry_label(e)
            for key, fit in R.FITS.items():
                rows += [{**base, "rule": label, "combiner": combiner,
                          "criterion": e.get("criterion"), "fit": fit, "kind": "budget",
                          "point": b.get("budget_mmacs"), "mmacs": b.get("mmacs"),
                          "top1": b.get("accuracy")} for b in e.get(key) or []]
            if combiner not in combiners:  # anytime depends on the combiner alone
                combiners.add(combiner)
                rows += [{**base, "rule": combiner, "combiner": combiner, "criterion": None,
                          "fit": None, "kind": "exit", "point": a.get("exit"),
                          "mmacs": a.get("mmacs"), "top1": a.get("top1")}
                         for a in e.get("anytime") or []]
        return rows

    # -- writing ------------------------------------------------------------------------
    def _wrote(self, key: str, value: Any) -> None:
        self.__dict__[key] = value

    def write_config(self, config: dict) -> None:
        """The resolved run config (it holds ``run_id`` and ``suite``)."""
        write_json(self.file(F.CONFIG), config)
        self._wrote("config", config)

    def set_status(self, state: str, *, epoch: int, epochs: int, fingerprint: str,
                   error: str | None = None) -> None:
        """``fingerprint``: the sha256 of the code writing it (bench.fingerprint)."""
        status = {"state": state, "error": error, "epoch": epoch, "epochs": epochs,
                  "updated": F.now(), "worker": f"{socket.gethostname()}:{os.getpid()}",
                  "fingerprint": fingerprint}
        write_json(self.file(F.STATUS), status)
        self._wrote("status", status)

    def write_environment(self, environment: dict) -> None:
        write_json(self.file(F.ENVIRONMENT), environment)
        self._wrote("environment", environment)

    def write_costs(self, mmacs: list[float], params: list[int], input_size: list[int]) -> None:
        """Cumulative per-exit cost, unrounded MMACs (fvcore MACs / 1e6) and parameters."""
        costs = {"mmacs": list(mmacs), "params": list(params), "counter": F.COST_COUNTER,
                 "input_size": list(input_size)}
        write_json(self.file(F.COSTS), costs)
        self._wrote("costs", costs)

    def write_heldout_index(self, indices) -> None:
        write_json(self.file(F.HELDOUT_INDEX), {"indices": [int(i) for i in indices]})

    def write_history(self, rows: list[dict]) -> None:
        """One row per (epoch, exit), as the trainer records them."""
        write_text(self.file(F.HISTORY), pd.DataFrame(rows).to_csv(index=False))
        self.__dict__.pop("history", None)

    def save_predictions(self, predictions: dict) -> None:
        """``{split: {"logits": Tensor[N_exits, M, C] float16, "raw_logits": Tensor[N_exits,
        M, C] float16, "targets": Tensor[M] int64}}`` for the held-out and test splits:
        ``logits`` are F_n (what each exit predicts with), ``raw_logits`` the heads' own f_n
        (absent in predictions saved before they were kept)."""
        save_torch(self.file(F.PREDICTIONS), predictions)

    def load_predictions(self) -> dict:
        return load_torch(self.file(F.PREDICTIONS))

    def write_training(self, record: dict) -> None:
        """training.json: the run's training cost (keys as :attr:`training` lists)."""
        write_json(self.file(F.TRAINING), record)
        self._wrote("training", record)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.file(F.METRICS), metrics)
        self._wrote("metrics", metrics)

    @property
    def checkpoint_path(self) -> Path:
        return self.file(F.CHECKPOINT)

    @property
    def lock_path(self) -> Path:
        """The file a worker locks while it runs this run (bench.pipeline.claims)."""
        return self.file(F.RUN_LOCK)

    def move_aside(self, tag: str) -> Path:
        """Move every output of the run (all but its lock and earlier moved outputs) into
        ``previous/<UTC time>-<tag>/``, so that it starts from scratch and nothing is lost."""
        stamp = F.now().replace("-", "").replace(":", "").replace("+0000", "Z")
        target = self.file(F.PREVIOUS) / f"{stamp}-{tag}"
        target.mkdir(parents=True, exist_ok=False)
        for entry in sorted(self.path.iterdir()):
            if entry.name not in (F.RUN_LOCK, F.PREVIOUS):
                entry.rename(target / entry.name)
        self.refresh()
        return target

    def checkpoint_epoch(self) -> int:
        """Epochs the last checkpoint holds (0 without one)."""
        ckpt = self.checkpoint_path
        return load_checkpoint(ckpt)["epoch"] if ckpt.exists() else 0


def save_checkpoint(path: Path, *, model: dict, optimizer: dict, scaler: dict, stage: int,
                    epoch: int, history: list[dict]) -> None:
    """The trainer's state after an epoch: state dicts, the stage (0-based) and the epochs
    finished over all stages, and the history rows so far."""
    save_torch(path, {"model": model, "optimizer": optimizer, "scaler": scaler, "stage": stage,
                      "epoch": epoch, "history": history})


def load_checkpoint(path: Path) -> dict:
    return load_torch(path)
