"""A finished run, rebuilt from its folder alone (anywhere on disk): the trained model with
the method's modules, the method, the per-exit costs, the fixed budgets' thresholds and the
data splits its config names. ``bench latency`` and ``bench export`` start from here.

Nothing is retrained: the weights come from the run's ``checkpoint.pt``, the thresholds
from its ``metrics.json`` (fitted on the held-out split when the run was evaluated).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

import methods
from bench import backbones, data as datasets, store
from bench.store import files as F
from bench.errors import UsageError
from bench.fileio import UnreadableFile


@dataclass
class Restored:
    run: store.Run
    model: nn.Module  # eval mode, on the CPU
    method: methods.Method
    exit_mmacs: list[float]  # cumulative, per exit
    budgets: list[dict]  # metrics.json's "budgeted" entries (thresholds fitted on held-out)

    @property
    def config(self) -> dict:
        return self.run.config


def _run_folder(path: Path) -> store.Run:
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path}: no such run folder")
    run = store.Run(path)
    missing = [n for n in (F.CONFIG, F.COSTS, F.METRICS, F.CHECKPOINT)
               if not run.file(n).is_file()]
    if missing:
        raise UsageError(f"{path}: not a finished run folder (missing {', '.join(missing)})")
    return run


def _entry(config: dict, key: str, path: Path) -> dict:
    entry = config.get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise UsageError(f"{path / F.CONFIG}: key {key!r} must be an object with a "
                         f"'name', found {entry!r}")
    return entry


def method_options(config: dict) -> dict:
    """The options the run trained with: its declared ones, ``tuned`` values filled in."""
    options = dict((config.get("method") or {}).get("options") or {})
    tuned = config.get("tuned") or {}
    options.update(tuned.get("options") or {})
    return options


def build_model(config: dict, path: Path) -> tuple[nn.Module, methods.Method]:
    """The run's backbone and method, built as the runner built them (untrained)."""
    backbone, method = _entry(config, "backbone", path), _entry(config, "method", path)
    num_classes = config.get("num_classes")
    if not isinstance(num_classes, int):
        raise UsageError(f"{path / F.CONFIG}: key 'num_classes' must be an integer, "
                         f"found {num_classes!r}")
    model = backbones.create(backbone["name"], num_classes=num_classes,
                             **(backbone.get("overrides") or {}))
    meth = methods.create(method["name"], **method_options(config))
    meth.install(model)
    return model, meth


def restore(path: Path) -> Restored:
    """The trained model and method of the finished run at ``path``; a UsageError names
    the file and key that is missing or does not fit."""
    run = _run_folder(path)
    config = run.config
    model, meth = build_model(config, run.path)
    try:
        ckpt = store.load_checkpoint(run.checkpoint_path)
    except UnreadableFile as err:
        raise UsageError(str(err)) from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise UsageError(f"{run.checkpoint_path}: the weights do not fit the model that "
                         f"config.json names: {str(err).splitlines()[0]}") from None
    meth.configure(model, None)  # training is over: the model only predicts
    model.eval()
    mmacs = run.costs.get("mmacs")
    if not isinstance(mmacs, list) or len(mmacs) != model.num_exits:
        raise UsageError(f"{run.file(F.COSTS)}: key 'mmacs' must list one cost per exit "
                         f"({model.num_exits}), found {mmacs!r}")
    budgets = (run.metrics or {}).get("budgeted") or []
    return Restored(run, model, meth, [float(m) for m in mmacs], budgets)


def load_splits(config: dict, path: Path, root: Path | None = None) -> datasets.Splits:
    """The run's data splits, as its config names them (``root`` replaces the data root
    recorded in config.json, for runs moved to another machine)."""
    ds = config.get("dataset")
    if not isinstance(ds, dict) or not isinstance(ds.get("name"), str):
        raise UsageError(f"{path / F.CONFIG}: key 'dataset' must be an object with a "
                         f"'name', found {ds!r}")
    subset = ds.get("subset") or {}
    return datasets.load(ds["name"], root if root is not None else ds.get("root", "data"),
                         download=False, heldout=int(ds.get("heldout", 0)),
                         seed=int(config.get("seed", 0)), train_subset=subset.get("train"),
                         test_subset=subset.get("test"), options=ds.get("options") or {})


def thresholds_of(entry: dict) -> list[float]:
    """A budget entry's per-exit thresholds as floats (2.0: nobody leaves, -1.0: all)."""
    return [float(t) for t in entry["thresholds"]]
