"""Validation of the suite's plain sections into typed configs (data set, training, seeds,
budgets, backbone entries, baseline; the evaluation section is bench.config.evaluation)."""
from __future__ import annotations

import re
from typing import Any

from bench import data
from bench.engine import precision
from bench.config import defaults as D
from bench.config.checker import Checker, join
from bench.config.schema import (BackboneEntry, BudgetsConfig, DatasetConfig,
                                 OptimizerConfig, ScheduleConfig, Subset, TrainingConfig,
                                 freeze)

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")
LABEL_RULE = "a label of letters, digits and _ . + = - (it names folders)"


def name(c: Checker, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        c.expect("name", "a non-empty string", value)
    return value


def description(c: Checker, value: Any) -> str:
    if not isinstance(value, str):
        c.expect("description", "a string", value)
    return value


def dataset(c: Checker, value: Any) -> DatasetConfig:
    d = c.mapping(value, "dataset", D.DATASET)
    name_ = c.choice(d["name"], "dataset.name", data.names(), "data set")
    c.string(d["root"], "dataset.root")
    c.boolean(d["download"], "dataset.download")
    registered = data.get(name_)
    allowed = registered.options
    options = c.plain(c.mapping(d["options"], "dataset.options", allowed), "dataset.options")
    for key in ("num_classes", "image_size", "channels", "train_size", "test_size"):
        if key in allowed:
            c.integer(options[key], f"dataset.options.{key}", lo=1)
    if "normalization" in allowed:
        c.choice(options["normalization"], "dataset.options.normalization",
                 list(data.NORMALIZATIONS), "normalization")
    heldout = d["heldout"]
    if heldout is None:
        heldout = registered.default_heldout(options)
    c.integer(heldout, "dataset.heldout", lo=0)
    if heldout == 0:  # training on the whole training set, as the reference's anytime runs do
        c.fail("dataset.heldout", "expected at least 1 image: every run predicts on the "
                                  "held-out split, where exit thresholds are fitted (never on "
                                  "test), found 0")
    if "train_size" in options and heldout >= options["train_size"]:
        c.fail("dataset.heldout", f"expected fewer than dataset.options.train_size = "
                                  f"{options['train_size']} images, found {heldout}")
    subset = c.mapping(d["subset"], "dataset.subset", D.SUBSET)
    for key in subset:
        c.integer(subset[key], f"dataset.subset.{key}", lo=1, null=True)
    return DatasetConfig(name_, d["root"], d["download"], heldout,
                         Subset(subset["train"], subset["test"]), freeze(options))


def shape(ds: DatasetConfig) -> tuple[int, tuple[int, int, int]]:
    """(num_classes, (C, H, W)) of the images a data set serves: its options where they
    set them, else what the data set registered."""
    return data.get(ds.name).shape(dict(ds.options))


def training(c: Checker, value: Any) -> TrainingConfig:
    t = c.mapping(value, "training", {**D.TRAINING, "amp": None})  # amp: the old spelling
    for key in ("epochs", "batch_size", "eval_batch_size"):
        c.integer(t[key], f"training.{key}", lo=1)
    c.integer(t["workers"], "training.workers", lo=0)
    for key in ("channels_last", "sync_bn", "compile", "drop_last"):
        c.boolean(t[key], f"training.{key}")
    c.string(t["device"], "training.device", DEVICE, "auto, cpu, cuda or cuda:N")
    return TrainingConfig(t["epochs"], t["batch_size"], t["eval_batch_size"],
                          optimizer(c, t["optimizer"]), schedule(c, t["schedule"]),
                          t["device"], _precision(c, value or {}, t), t["workers"],
                          t["channels_last"], t["sync_bn"], t["compile"], t["drop_last"])


def _precision(c: Checker, given: dict, t: dict) -> str:
    """training.precision, or what the old key training.amp says (true: fp16, false: fp32)."""
    if t["amp"] is None:
        return c.choice(t["precision"], "training.precision", list(precision.PRECISIONS),
                        "precision")
    c.boolean(t["amp"], "training.amp")
    if given.get("precision") is not None:
        c.fail("training.amp", "training.amp is the old spelling of training.precision (amp "
                               "true: fp16, false: fp32); give only training.precision")
    return D.AMP_PRECISION[t["amp"]]


def _named_section(c: Checker, value: Any, path: str, default: str) -> dict:
    """A mapping with a ``name`` key (``name`` absent: ``default``)."""
    if value is not None and not isinstance(value, dict):
        c.expect(path, "a mapping", value)
    return {"name": default, **(value or {})}


def optimizer(c: Checker, value: Any) -> OptimizerConfig:
    opt = _named_section(c, value, "training.optimizer", D.OPTIMIZER)
    name_ = c.choice(opt["name"], "training.optimizer.name", list(D.OPTIMIZERS), "optimizer")
    opt = c.mapping(opt, "training.optimizer", {"name": name_, **D.OPTIMIZERS[name_]})
    path = "training.optimizer"
    lr = c.number(opt["lr"], f"{path}.lr", lo=0, open_lo=True)
    momentum = c.number(opt["momentum"], f"{path}.momentum", lo=0, hi=1, open_hi=True)
    decay = c.number(opt["weight_decay"], f"{path}.weight_decay", lo=0)
    nesterov = c.boolean(opt["nesterov"], f"{path}.nesterov")
    if nesterov and momentum == 0:
        c.fail(f"{path}.nesterov", "Nesterov momentum needs momentum > 0")
    return OptimizerConfig(name_, lr, momentum, decay, nesterov)


def schedule(c: Checker, value: Any) -> ScheduleConfig:
    sched = _named_section(c, value, "training.schedule", D.SCHEDULE)
    name_ = c.choice(sched["name"], "training.schedule.name", list(D.SCHEDULES), "schedule")
    sched = c.mapping(sched, "training.schedule", {"name": name_, **D.SCHEDULES[name_]})
    if name_ != "step":
        return ScheduleConfig(name_)
    # Fractions of each stage's epochs (a stage-wise run restarts the schedule per stage).
    path = "training.schedule.milestones"
    ms = c.items(sched["milestones"], path,
                 lambda v, p: c.number(v, p, lo=0, hi=1, open_lo=True, open_hi=True))
    if any(b <= a for a, b in zip(ms, ms[1:])):
        c.expect(path, "increasing fractions of the epochs", ms)
    gamma = c.number(sched["gamma"], "training.schedule.gamma", lo=0, open_lo=True)
    return ScheduleConfig(name_, tuple(ms), gamma)


def seeds(c: Checker, value: Any) -> tuple[int, ...]:
    out = c.items(value, "seeds", c.seed)
    if len(set(out)) != len(out):
        c.expect("seeds", "distinct seeds", value)
    return tuple(out)


def budgets(c: Checker, value: Any) -> BudgetsConfig:
    b = c.mapping(value, "budgets", D.BUDGETS)
    if b["mmacs"] is not None and b["fractions"] is not None:
        c.fail("budgets", "give at most one of mmacs (absolute) and fractions (of the last "
                          "exit's cost), found both")
    out = {}
    for key, hi in (("mmacs", None), ("fractions", 1)):
        out[key] = None if b[key] is None else tuple(c.items(
            b[key], f"budgets.{key}", lambda v, p: c.number(v, p, lo=0, hi=hi, open_lo=True)))
    return BudgetsConfig(out["mmacs"], out["fractions"])


def entries(c: Checker, value: Any, section: str, known: list[str], what: str,
            keys: dict) -> list[dict]:
    """``backbones`` / ``methods``: each a registry name or a mapping; labels unique."""
    labels: dict[str, str] = {}

    def entry(v, path):
        e = c.mapping({"name": v} if isinstance(v, str) else v, path, keys)
        c.choice(e["name"], join(path, "name"), known, what)
        if e["label"] is None:
            e["label"] = e["name"]
        c.string(e["label"], join(path, "label"), LABEL, LABEL_RULE)
        if e["label"] in labels:
            c.fail(join(path, "label"), f"label {e['label']!r} is already used by "
                                        f"{labels[e['label']]}; give each entry its own label")
        labels[e["label"]] = path
        return e

    return c.items(value, section, entry)


def backbone_entry(c: Checker, e: dict, path: str, num_classes: int, dataset_name: str
                   ) -> BackboneEntry:
    if not isinstance(e["overrides"], dict):
        c.expect(join(path, "overrides"), "a mapping of constructor arguments", e["overrides"])
    overrides = c.plain(e["overrides"], join(path, "overrides"))
    if "num_classes" in overrides:
        c.fail(join(path, "overrides.num_classes"),
               f"num_classes comes from the data set ({dataset_name}: {num_classes})")
    return BackboneEntry(e["name"], e["label"], freeze(overrides))


def baseline(c: Checker, value: Any, labels: list[str]) -> str | None:
    """The label the other methods are compared with: ``baseline`` if given (it must be a
    method label of the suite), else ``joint`` where the suite has that label, else none."""
    if value is None:
        return D.BASELINE if D.BASELINE in labels else None
    c.string(value, "baseline")
    if value not in labels:
        c.fail("baseline", f"{value!r} is not a method label of this suite; labels: "
                           f"{', '.join(labels)}")
    return value
