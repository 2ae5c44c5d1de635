"""One run folder, ``results/<suite>/<run_id>/``: the only code that names its files and keys.

Reading is tolerant (a missing or unreadable file reads as empty, so partial folders still
render; an unreadable one is named in one line, see bench.store.files); writing is atomic
(bench.fileio). The runner writes through the ``write_*`` and
``save_*`` methods, the report and ``bench results`` read through the properties.
"""
from __future__ import annotations

import math
import os
import socket
import zipfile
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench import fileio
from bench.fileio import (UnreadableFile, fsync_dir, load_torch, refuse_links, save_torch,
                          write_json, write_text)
from bench.store import files as F
from bench.store import rules as R
from bench.store import schema as S

LEFT_OUT = "the run's results are left out"


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
    """``root``: the results root, for a run of a suite folder (``Suite.run``): the run and
    suite folders must then not be symbolic links (the harness never makes one, and a link
    would lead reads and writes outside the results root); every file of such a run raises
    bench.fileio.LinkRefused. A run folder given by the user (``bench latency RUN_DIR``)
    has no root and may be reached through links."""

    def __init__(self, path: Path, root: Path | None = None):
        self.path = Path(path)
        self.run_id = self.path.name
        self.root = None if root is None else Path(root)

    @property
    def folder(self) -> Path:
        """The run folder, checked for links where the run has a root."""
        return self.path if self.root is None else refuse_links(self.path, self.root)

    def file(self, name: str) -> Path:
        return self.folder / name

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------
    @cached_property
    def config(self) -> dict:
        return self._json(F.CONFIG, "the run's labels read as ?")

    @cached_property
    def status(self) -> dict:
        return self._json(F.STATUS, "the run reads as not started")

    @cached_property
    def environment(self) -> dict:
        return self._json(F.ENVIRONMENT, "left out")

    @cached_property
    def costs(self) -> dict:
        return self._json(F.COSTS, "left out")

    @cached_property
    def metrics(self) -> dict | None:
        return self._json(F.METRICS, LEFT_OUT)

    @cached_property
    def history(self) -> pd.DataFrame | None:
        return F.read_csv_or_none(self.file(F.HISTORY), HISTORY_COLUMNS, S.HISTORY_NUMERIC)

    def _json(self, name: str, consequence: str) -> Any:
        """A JSON file of the run checked against its spec (bench.store.schema); when
        missing or unreadable, {} (None for metrics.json)."""
        default = None if name == F.METRICS else {}
        return F.read_json_or(self.file(name), default, consequence, JSON_SPECS[name])

    @cached_property
    def training(self) -> dict:
        """training.json, the run's training cost (``forward_passes_per_step``,
        ``backward_passes_per_step``, ``seconds_per_epoch``, ``epochs_per_stage``,
        ``peak_memory_mb``), or {} where it was not recorded."""
        value = F.read_json_or(self.file(F.TRAINING), {})
        return value if isinstance(value, dict) else {}

    @cached_property
    def latency(self) -> dict | None:
        """latency.json (``bench latency``: measured ms per image with real exits), or None
        where it was not measured or is unreadable."""
        value = F.read_json_or(self.file(F.LATENCY), None, "its latency is left out")
        return value if isinstance(value, dict) else None

    @property
    def imported(self) -> dict | None:
        """Where an imported run's predictions came from (``bench evaluate --checkpoint`` or
        ``--logits``: config.json's ``imported``, with ``kind`` and ``file``), or None for a
        run this harness trained."""
        value = self.config.get("imported")
        return value if isinstance(value, dict) else None

    @property
    def rules(self) -> list[dict]:
        """The exit-rule entries of metrics.json (bench.store.rules); older metrics read as
        the default rule alone."""
        return R.entries(self.metrics)

    def refresh(self) -> "Run":
        """Forget what was read (another worker may have written since)."""
        for key in ("config", "status", "environment", "costs", "metrics", "history",
                    "training", "latency"):
            self.__dict__.pop(key, None)
        return self

    @property
    def state(self) -> str:
        """done | failed | running | pending (no status.json yet)."""
        return str(self.status.get("state") or "pending")

    def is_done(self) -> bool:
        """Finished: status done and readable metrics (read fresh from disk, quietly: a run
        that is not done is claimed, and its broken files are set aside then)."""
        self.refresh()
        status, _ = F.json_problem(self.file(F.STATUS), S.STATUS)
        metrics, _ = F.json_problem(self.file(F.METRICS), S.METRICS)
        return (status or {}).get("state") == "done" and metrics is not None

    def unreadable(self) -> dict[str, str]:
        """Files of the run that exist but cannot be read: name -> why. JSON and CSV files
        are parsed; torch files only have their zip directory checked (cheap: a truncated
        or foreign file has none; the tensors are checked when they are loaded)."""
        out = {name: why for name in (F.PREDICTIONS, F.CHECKPOINT)
               if (why := torch_file_problem(self.file(name)))}
        for name, spec in JSON_SPECS.items():
            _, problem = F.json_problem(self.file(name), spec)
            out.update({name: problem} if problem else {})
        _, problem = F.csv_problem(self.file(F.HISTORY), HISTORY_COLUMNS, S.HISTORY_NUMERIC)
        out.update({F.HISTORY: problem} if problem else {})
        return out

    def temporary_files(self) -> list[Path]:
        return fileio.temporary_files(self.folder, F.RUN_FILES)

    def remove_temporary(self) -> list[Path]:
        """Delete what killed writes left (hold the run's lock: writes happen under it)."""
        return fileio.remove_temporary(self.folder, F.RUN_FILES)

    def tidy(self) -> tuple[list[Path], list[tuple[str, str, Path]]]:
        """Before a worker runs the run (holding its claim): delete the temporary files of
        killed writes and set broken files aside (``<name>.corrupt-<time>``), so that they
        are written afresh (a run without a checkpoint starts over) and nothing is lost.
        Returns (deleted temporary files, [(file name, why it is broken, where it went)])."""
        removed = self.remove_temporary()
        moved = [(name, why, F.set_aside(self.file(name)))
                 for name, why in self.unreadable().items()]
        self.refresh()
        return removed, moved

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
                   error: str | None = None, traceback: str | None = None) -> None:
        """``fingerprint``: the sha256 of the code writing it (bench.fingerprint); a failed
        run's ``error`` (one line) and ``traceback`` (where it was raised)."""
        status = {"state": state, "error": error, "traceback": traceback, "epoch": epoch,
                  "epochs": epochs, "updated": F.now(),
                  "worker": f"{socket.gethostname()}:{os.getpid()}", "fingerprint": fingerprint}
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

    def write_training(self, record: dict) -> None:
        """What training cost (the trainer's ``training_record``)."""
        write_json(self.file(F.TRAINING), record)
        self._wrote("training", record)

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
        (absent in predictions saved before they were kept). Imported logits beyond
        float16's range are float32 (bench.pipeline.importing)."""
        save_torch(self.file(F.PREDICTIONS), predictions)

    def load_predictions(self) -> dict:
        """Raises FileNotFoundError or bench.fileio.UnreadableFile (also for a torch file
        that holds something else than :meth:`save_predictions` writes)."""
        path = self.file(F.PREDICTIONS)
        predictions = load_torch(path)
        why = predictions_problem(predictions)
        if why:
            raise UnreadableFile(path, f"unexpected content: {why}")
        return predictions

    def read_predictions(self) -> dict | None:
        """The saved predictions, or None when missing or unreadable (named in one line)."""
        try:
            return self.load_predictions()
        except FileNotFoundError:
            return None
        except UnreadableFile as err:
            F.report_unreadable(err.path, err.reason, "left out")
            return None

    def write_latency(self, latency: dict) -> None:
        """``bench latency``'s measurements (docs/results-format.md); replaces the last."""
        write_json(self.file(F.LATENCY), latency)
        self._wrote("latency", latency)

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
        refuse_links(target.parent, self.path)
        target.mkdir(parents=True, exist_ok=False)
        for entry in sorted(self.folder.iterdir()):
            if entry.name not in (F.RUN_LOCK, F.PREVIOUS):
                entry.rename(target / entry.name)
        fsync_dir(target)
        fsync_dir(self.path)
        self.refresh()
        return target

    def checkpoint_epoch(self) -> int:
        """Epochs the last checkpoint holds (0 without a readable one)."""
        try:
            epoch = load_checkpoint(self.checkpoint_path).get("epoch", 0)
        except (FileNotFoundError, UnreadableFile):
            return 0
        return epoch if isinstance(epoch, int) else 0


def save_checkpoint(path: Path, *, model: dict, optimizer: dict, scaler: dict, stage: int,
                    epoch: int, history: list[dict], method: dict | None = None,
                    epoch_costs: list[dict] | None = None,
                    post_training: dict | None = None) -> None:
    """The trainer's state after an epoch: state dicts, the stage (0-based) and the epochs
    finished over all stages, the history rows so far, the method's own training state,
    the cost of every epoch so far and the post-training phase's record once it ran."""
    save_torch(path, {"model": model, "optimizer": optimizer, "scaler": scaler, "stage": stage,
                      "epoch": epoch, "history": history, "method": method or {},
                      "epoch_costs": epoch_costs or [], "post_training": post_training})


def load_checkpoint(path: Path) -> dict:
    """Raises FileNotFoundError, or bench.fileio.UnreadableFile for a file that does not load
    or holds something else than :func:`save_checkpoint` writes."""
    ckpt = load_torch(path)
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UnreadableFile(path, f"not a checkpoint of this harness (no {', '.join(missing)})")
    if not (isinstance(ckpt["epoch"], int) and isinstance(ckpt["stage"], int)
            and isinstance(ckpt["history"], list) and isinstance(ckpt["model"], dict)):
        raise UnreadableFile(path, "not a checkpoint of this harness (epoch, stage, history "
                                   "or model of the wrong type)")
    return ckpt


def torch_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a file torch.save wrote (a zip archive), or None (also when
    it is missing)."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except FileNotFoundError:
        return None
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        return f"not a readable torch file: {err}"
    return None


CHECKPOINT_KEYS = ("model", "optimizer", "scaler", "stage", "epoch", "history")
HISTORY_COLUMNS = ("epoch", "exit")


def predictions_problem(predictions: Any) -> str | None:
    """Why ``predictions`` is not ``{split: {"logits": [N, M, C], "targets": [M]}}`` for the
    held-out and test splits, or None."""
    for split in ("heldout", "test"):
        part = predictions.get(split) if isinstance(predictions, dict) else None
        if not isinstance(part, dict):
            return f"no {split} split"
        logits, targets = part.get("logits"), part.get("targets")
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
            return f"{split}.logits is not a tensor [exits, images, classes]"
        if not isinstance(targets, torch.Tensor) or targets.shape != logits.shape[1:2]:
            return f"{split}.targets is not a tensor of one label per image"
    return None


JSON_SPECS = {F.CONFIG: S.CONFIG, F.STATUS: S.STATUS, F.ENVIRONMENT: S.ENVIRONMENT,
              F.COSTS: S.COSTS, F.HELDOUT_INDEX: S.HELDOUT_INDEX, F.METRICS: S.METRICS}
