"""Suites: the YAML schema, its validation, and expansion into runs.

    suite = load_suite("suites/cifar100.yaml", overrides=["training.epochs=3"])
    for run in select(suite.runs, "*boostnet*"):
        run.run_id, run.config            # everything the run depends on

A suite file names a data set, backbones, methods, seeds, the training recipe and the
budgets of budgeted-batch evaluation (the shipped files in suites/ comment every field).
Validation fills every default, so ``Suite.config`` is the complete resolved suite, and
reports problems as :class:`SuiteError` naming the file, the key path (``methods[2].options
.temperature``), what was expected and what was found. Methods and backbones are checked by
building them: every backbone once (its per-exit fvcore cost is cached per process), every
method once per backbone.

A run is backbone x method x seed. Its id is ``<backbone>--<method>--s<seed>--<hash8>`` with
hash8 from SHA-256 of the canonical JSON of the run's config (which holds the code version),
leaving out the keys in NOT_HASHED: where the data live and how many loader processes read
them do not change a result, so moving the data must not orphan finished runs.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

import bench
import methods
from bench import backbones, data

REQUIRED = object()

TOP_LEVEL = ("name", "description", "dataset", "backbones", "methods", "seeds", "training",
             "budgets", "evaluation", "tune")
# Evaluation options: computed from saved logits, so they never change a run id.
EVALUATION = {"calibration": False}
# The method option value meaning "take t_n from this suite's Optuna study" (bench.tune).
TUNED = "tuned"

# Classes per data set; image sizes come from the data set's options (bench.data.OPTIONS).
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashion_mnist": 10, "imagenet": 1000,
               "mnist": 10}
# Held-out calibration images taken from train, per data set (method.md: 5,000 for CIFAR,
# 50,000 for ImageNet); synthetic: a fifth of its training set.
HELDOUT = {"imagenet": 50000}
HELDOUT_DEFAULT = 5000

OPTIMIZERS = {"sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False}}
# The paper's recipe: lr x0.1 at 50% and 75% of the epochs (CIFAR: epochs 150 and 225 of 300).
SCHEDULES = {"step": {"milestones": [0.5, 0.75], "gamma": 0.1}, "cosine": {}, "constant": {}}
TRAINING = {"epochs": 300, "batch_size": 64, "eval_batch_size": 256, "optimizer": None,
            "schedule": None, "device": "auto", "amp": False, "workers": 0,
            "channels_last": False, "sync_bn": False, "compile": False}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")

# Run-config keys that cannot change a result; left out of the run id's hash.
NOT_HASHED = (("dataset", "root"), ("dataset", "download"), ("dataset", "options", "workers"),
              ("training", "workers"), ("evaluation",))


class SuiteError(Exception):
    """A suite that cannot be run: the message names the file, the key path and the problem."""

    def __init__(self, file: str, path: str, message: str):
        self.file, self.path, self.message = file, path, message
        super().__init__(f"{file}: {path}: {message}" if path else f"{file}: {message}")


@dataclass
class RunSpec:
    run_id: str
    suite_slug: str
    backbone_name: str
    backbone_label: str
    overrides: dict
    method_name: str
    method_label: str
    method_options: dict
    seed: int
    num_classes: int
    input_size: list[int]
    exit_mmacs: list[float]
    budgets_mmacs: list[float]
    config: dict  # everything the run depends on; JSON-serializable

    @property
    def labels(self) -> str:
        """``backbone/method/seed``, what ``select`` matches besides the run id."""
        return f"{self.backbone_label}/{self.method_label}/{self.seed}"


@dataclass
class Suite:
    name: str  # display name, any text
    slug: str  # folder-safe: results/<slug>/
    path: str
    config: dict  # the resolved, validated suite: every default filled, JSON-serializable
    runs: list[RunSpec]
    overrides: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads 1e-4 as a float (YAML 1.1 would
    read it as text)."""

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _yaml_error(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}invalid YAML: {problem}" + (f" ({context})" if context else "")


# ---------------------------------------------------------------------------------------
# Checks. Each takes the checker (for the file name), the value and its key path.


def _found(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return f"a mapping {_short(value)}"
    if isinstance(value, list):
        return f"a list {_short(value)}"
    return f"{_short(value)} ({type(value).__name__})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class _Checker:
    def __init__(self, file: str):
        self.file = file

    def fail(self, path: str, message: str):
        raise SuiteError(self.file, path, message)

    def expect(self, path: str, expected: str, value: Any):
        self.fail(path, f"expected {expected}, found {_found(value)}")

    def mapping(self, value: Any, path: str, defaults: dict) -> dict:
        """A mapping whose keys are those of ``defaults``; missing keys get the default,
        ``REQUIRED`` ones must be there."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.expect(path, "a mapping", value)
        for key in value:
            if key not in defaults:
                self.fail(_join(path, str(key)),
                          f"unknown key {key!r}; allowed: {', '.join(defaults)}")
        out = {}
        for key, default in defaults.items():
            if key in value:
                out[key] = value[key]
            elif default is REQUIRED:
                self.fail(_join(path, key), "required key is missing")
            else:
                out[key] = copy.deepcopy(default)
        return out

    def integer(self, value: Any, path: str, lo: int | None = None, null: bool = False):
        if value is None and null:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.expect(path, "an integer" + (" or null" if null else ""), value)
        if lo is not None and value < lo:
            self.expect(path, f"an integer >= {lo}", value)
        return value

    def number(self, value: Any, path: str, lo: float | None = None, hi: float | None = None,
               open_lo: bool = False, open_hi: bool = False) -> float:
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value)):
            self.expect(path, "a finite number", value)
        if ((lo is not None and (value < lo or (open_lo and value == lo)))
                or (hi is not None and (value > hi or (open_hi and value == hi)))):
            interval = f"{'(' if open_lo else '['}{'-inf' if lo is None else lo}, " \
                       f"{'inf' if hi is None else hi}{')' if open_hi else ']'}"
            self.expect(path, f"a number in {interval}", value)
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.expect(path, "true or false", value)
        return value

    def string(self, value: Any, path: str, pattern: re.Pattern | None = None,
               allowed: str = "") -> str:
        if not isinstance(value, str) or not value:
            self.expect(path, "a non-empty string", value)
        if pattern is not None and not pattern.fullmatch(value):
            self.expect(path, allowed, value)
        return value

    def choice(self, value: Any, path: str, choices: Sequence[str], what: str) -> str:
        if not isinstance(value, str) or value not in choices:
            self.fail(path, f"unknown {what} {_short(value)}; known: {', '.join(choices)}")
        return value

    def items(self, value: Any, path: str, check: Callable[[Any, str], Any],
              null: bool = False) -> list | None:
        """A non-empty list, each item checked by ``check(item, item_path)``."""
        if value is None and null:
            return None
        if not isinstance(value, list) or not value:
            self.expect(path, "a non-empty list" + (" or null" if null else ""), value)
        return [check(v, _join(path, i)) for i, v in enumerate(value)]

    def plain(self, value: Any, path: str) -> Any:
        """Free-form data (overrides, options, tune): JSON types only, string keys."""
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    self.expect(_join(path, str(key)), "a string key", key)
            return {k: self.plain(v, _join(path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.plain(v, _join(path, i)) for i, v in enumerate(value)]
        if isinstance(value, float) and not math.isfinite(value):
            self.expect(path, "a finite number", value)
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        self.expect(path, "a string, number, boolean, null, list or mapping", value)


# ---------------------------------------------------------------------------------------
# Sections


def _dataset(c: _Checker, value: Any) -> dict:
    d = c.mapping(value, "dataset", {"name": REQUIRED, "root": "data", "download": False,
                                     "heldout": None, "subset": None, "options": None})
    name = c.choice(d["name"], "dataset.name", data.names(), "data set")
    c.string(d["root"], "dataset.root")
    c.boolean(d["download"], "dataset.download")
    defaults = data.OPTIONS[name]
    options = c.plain(c.mapping(d["options"], "dataset.options", defaults), "dataset.options")
    for key in ("num_classes", "image_size", "channels", "train_size", "test_size"):
        if key in defaults:
            c.integer(options[key], f"dataset.options.{key}", lo=1)
    d["options"] = options
    if d["heldout"] is None:
        d["heldout"] = (options["train_size"] // 5 if name == "synthetic"
                        else HELDOUT.get(name, HELDOUT_DEFAULT))
    c.integer(d["heldout"], "dataset.heldout", lo=0)
    if name == "synthetic" and d["heldout"] >= options["train_size"]:
        c.fail("dataset.heldout", f"expected fewer than dataset.options.train_size = "
                                  f"{options['train_size']} images, found {d['heldout']}")
    subset = c.mapping(d["subset"], "dataset.subset", {"train": None, "test": None})
    for key in subset:
        c.integer(subset[key], f"dataset.subset.{key}", lo=1, null=True)
    d["subset"] = subset
    return d


def dataset_shape(dataset: dict) -> tuple[int, tuple[int, int, int]]:
    """(num_classes, input_size) of a resolved ``dataset`` section."""
    opts = dataset["options"]
    num_classes = opts["num_classes"] if "num_classes" in opts else NUM_CLASSES[dataset["name"]]
    size = opts.get("image_size", 32)
    return num_classes, (opts.get("channels", 3), size, size)


def _training(c: _Checker, value: Any) -> dict:
    t = c.mapping(value, "training", TRAINING)
    for key in ("epochs", "batch_size", "eval_batch_size"):
        c.integer(t[key], f"training.{key}", lo=1)
    c.integer(t["workers"], "training.workers", lo=0)
    for key in ("amp", "channels_last", "sync_bn", "compile"):
        c.boolean(t[key], f"training.{key}")
    c.string(t["device"], "training.device", DEVICE, "auto, cpu, cuda or cuda:N")

    opt = t["optimizer"] if isinstance(t["optimizer"], dict) else {} if t["optimizer"] is None \
        else c.expect("training.optimizer", "a mapping", t["optimizer"])
    name = c.choice(opt.get("name", "sgd"), "training.optimizer.name", list(OPTIMIZERS),
                    "optimizer")
    opt = c.mapping(opt, "training.optimizer", {"name": name, **OPTIMIZERS[name]})
    c.number(opt["lr"], "training.optimizer.lr", lo=0, open_lo=True)
    c.number(opt["momentum"], "training.optimizer.momentum", lo=0, hi=1, open_hi=True)
    c.number(opt["weight_decay"], "training.optimizer.weight_decay", lo=0)
    c.boolean(opt["nesterov"], "training.optimizer.nesterov")
    if opt["nesterov"] and opt["momentum"] == 0:
        c.fail("training.optimizer.nesterov", "Nesterov momentum needs momentum > 0")
    for key in ("lr", "momentum", "weight_decay"):
        opt[key] = float(opt[key])
    t["optimizer"] = opt

    sched = t["schedule"] if isinstance(t["schedule"], dict) else {} if t["schedule"] is None \
        else c.expect("training.schedule", "a mapping", t["schedule"])
    name = c.choice(sched.get("name", "step"), "training.schedule.name", list(SCHEDULES),
                    "schedule")
    sched = c.mapping(sched, "training.schedule", {"name": name, **SCHEDULES[name]})
    if name == "step":
        # Fractions of each stage's epochs (a sequential run restarts the schedule per stage).
        path = "training.schedule.milestones"
        ms = c.items(sched["milestones"], path,
                     lambda v, p: c.number(v, p, lo=0, hi=1, open_lo=True, open_hi=True))
        if any(b <= a for a, b in zip(ms, ms[1:])):
            c.expect(path, "increasing fractions of the epochs", ms)
        c.number(sched["gamma"], "training.schedule.gamma", lo=0, open_lo=True)
        sched["milestones"] = [float(m) for m in ms]
        sched["gamma"] = float(sched["gamma"])
    t["schedule"] = sched
    return t


def _budgets(c: _Checker, value: Any) -> dict:
    b = c.mapping(value, "budgets", {"mmacs": None, "fractions": None})
    if b["mmacs"] is not None and b["fractions"] is not None:
        c.fail("budgets", "give at most one of mmacs (absolute) and fractions (of the last "
                          "exit's cost), found both")
    for key, hi in (("mmacs", None), ("fractions", 1)):
        values = c.items(b[key], f"budgets.{key}",
                         lambda v, p: c.number(v, p, lo=0, hi=hi, open_lo=True), null=True)
        b[key] = None if values is None else [float(v) for v in values]
    return b


def _entries(c: _Checker, value: Any, section: str, known: list[str], what: str,
             keys: dict) -> list[dict]:
    """``backbones`` / ``methods``: each a registry name or a mapping; labels unique."""
    out, labels = [], {}

    def entry(v, path):
        e = c.mapping({"name": v} if isinstance(v, str) else v, path, keys)
        c.choice(e["name"], _join(path, "name"), known, what)
        if e["label"] is None:
            e["label"] = e["name"]
        c.string(e["label"], _join(path, "label"), LABEL,
                 "a label of letters, digits and _ . + = - (it names folders)")
        if e["label"] in labels:
            c.fail(_join(path, "label"), f"label {e['label']!r} is already used by "
                                         f"{labels[e['label']]}; give each entry its own label")
        labels[e["label"]] = path
        return e

    for e in c.items(value, section, entry):
        out.append(e)
    return out


# ---------------------------------------------------------------------------------------
# Backbones: built once per (name, overrides, num_classes) in a process.


@dataclass(frozen=True)
class BackboneInfo:
    num_exits: int
    input_size: tuple[int, int, int]
    exit_mmacs: tuple[float, ...]  # cumulative fvcore MACs / 1e6 per exit
    class_name: str
    has_grad_rescale: bool


_BACKBONES: dict[tuple, BackboneInfo] = {}


def backbone_info(name: str, overrides: dict, num_classes: int) -> BackboneInfo:
    """Build the backbone and count its per-exit cost; cached per process. Raises what
    the constructor raises."""
    from bench import flops

    key = (name, _canonical(overrides), num_classes)
    if key not in _BACKBONES:
        model = backbones.create(name, num_classes=num_classes, **overrides)
        macs = flops.per_exit_cached(model)
        _BACKBONES[key] = BackboneInfo(
            model.num_exits, tuple(model.input_size), tuple(m / 1e6 for m in macs),
            type(model).__name__, hasattr(model, "grad_rescale"))
    return _BACKBONES[key]


def _backbone(c: _Checker, e: dict, path: str, num_classes: int, input_size: tuple,
              dataset: str) -> BackboneInfo:
    if e["overrides"] is not None and not isinstance(e["overrides"], dict):
        c.expect(_join(path, "overrides"), "a mapping of constructor arguments", e["overrides"])
    e["overrides"] = c.plain(e["overrides"] or {}, _join(path, "overrides"))
    if "num_classes" in e["overrides"]:
        c.fail(_join(path, "overrides.num_classes"),
               f"num_classes comes from the data set ({dataset}: {num_classes})")
    try:
        info = backbone_info(e["name"], e["overrides"], num_classes)
    except Exception as err:  # the constructor's own message says what is wrong
        where = _named_key(_join(path, "overrides"), e["overrides"], str(err)) \
            if e["overrides"] else path
        c.fail(where, f"backbone {e['name']!r} cannot be built with overrides "
                      f"{e['overrides']}: {type(err).__name__}: {err}")
    if info.input_size != tuple(input_size):
        c.fail(path, f"backbone {e['label']!r} takes inputs of size {list(info.input_size)}, "
                     f"data set {dataset!r} gives {list(input_size)}")
    return info


# ---------------------------------------------------------------------------------------
# Methods


def _method_options(c: _Checker, e: dict, path: str) -> None:
    """Check option names and types (types from the defaults), fill the defaults."""
    opath = _join(path, "options")
    allowed = methods.option_names(e["name"])
    c.mapping(e["options"], opath, {k: None for k in allowed})  # unknown options
    given = c.plain(e["options"] or {}, opath)
    defaults = methods.create(e["name"]).options()
    for key, value in given.items():
        default, p = defaults.get(key), _join(opath, key)
        if key == "temperature" and value == TUNED:
            continue  # resolved from the tuning study when the run starts (bench.tune)
        # Numbers as floats, so that temperature: 1 and temperature: 1.0 give one run id.
        if isinstance(default, bool):
            c.boolean(value, p)
        elif isinstance(default, (int, float)) and not isinstance(value, list):
            given[key] = float(c.number(value, p))
        elif isinstance(default, (int, float)) or (default is None and value is not None):
            given[key] = [float(v) for v in c.items(value, p, lambda v, q: c.number(v, q))]
    e["options"] = {**{k: v for k, v in defaults.items() if k in allowed}, **given}
    _create_method(c, e, path)


def _create_method(c: _Checker, e: dict, path: str):
    options = dict(e["options"])
    if options.get("temperature") == TUNED:  # checked with the paper's default meanwhile
        options["temperature"] = 0.5
    try:
        return methods.create(e["name"], **options)
    except (TypeError, ValueError) as err:
        c.fail(_option_path(path, e, str(err)), f"method {e['name']!r}: {err}")


def _option_path(path: str, e: dict, message: str) -> str:
    return _named_key(_join(path, "options"), e["options"], message)


def _named_key(path: str, mapping: dict, message: str) -> str:
    """The key of ``mapping`` an error message is about (the first it names), else ``path``."""
    named = [k for k in mapping if re.search(rf"\b{re.escape(k)}\b", message)]
    return _join(path, named[0]) if named else path


def _check_method_on(c: _Checker, e: dict, path: str, info: BackboneInfo, backbone: dict,
                     num_classes: int, epochs: int) -> None:
    """Run the method's per-backbone checks on dummy logits: temperatures and loss weights
    per exit, gradient rescaling support, one stage per exit needing an epoch each."""
    import torch

    m = _create_method(c, e, path)
    on = f"on backbone {backbone['label']!r} ({info.num_exits} exits)"
    attrs = {"grad_rescale": False} if info.has_grad_rescale else {}
    stand_in = type(info.class_name, (), attrs)()  # prepare() only looks at grad_rescale
    try:
        outs = [torch.zeros(2, num_classes) for _ in range(info.num_exits)]
        m.combine(outs)
        m.loss(outs, torch.zeros(2, dtype=torch.long))
        m.prepare(stand_in)
        stages = m.stages(info.num_exits)
    except (TypeError, ValueError) as err:
        c.fail(_option_path(path, e, str(err)), f"method {e['label']!r} {on}: {err}")
    try:
        methods.split_epochs(epochs, stages)
    except ValueError as err:
        c.fail("training.epochs", f"method {e['label']!r} {on}: {err}")


# ---------------------------------------------------------------------------------------
# Loading and expansion


def slugify(name: str) -> str:
    """A folder-safe form of a suite's display name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return slug or "suite"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def _plain_copy(value: Any) -> Any:
    """A deep copy through JSON (tuples become lists), key order kept."""
    return json.loads(json.dumps(value, allow_nan=False))


def run_hash(config: dict) -> str:
    """hash8 of a run config (which holds the code version), NOT_HASHED keys left out."""
    hashed = copy.deepcopy(config)
    for keys in NOT_HASHED:
        node = hashed
        for k in keys[:-1]:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(keys[-1], None)
    return hashlib.sha256(_canonical(hashed).encode()).hexdigest()[:8]


def _resolve(raw: Any, file: str) -> tuple[dict, list[RunSpec]]:
    c = _Checker(file)
    s = c.mapping(raw, "", {k: REQUIRED if k in ("name", "dataset", "backbones", "methods")
                            else None for k in TOP_LEVEL})
    if not isinstance(s["name"], str) or not s["name"].strip():
        c.expect("name", "a non-empty string", s["name"])
    s["description"] = "" if s["description"] is None else s["description"]
    if not isinstance(s["description"], str):
        c.expect("description", "a string", s["description"])
    s["dataset"] = _dataset(c, s["dataset"])
    s["training"] = _training(c, s["training"])
    s["seeds"] = [0] if s["seeds"] is None else s["seeds"]
    c.items(s["seeds"], "seeds", lambda v, p: c.integer(v, p, lo=0))
    if len(set(s["seeds"])) != len(s["seeds"]):
        c.expect("seeds", "distinct seeds", s["seeds"])
    s["budgets"] = _budgets(c, s["budgets"])
    s["evaluation"] = c.mapping(s["evaluation"], "evaluation", EVALUATION)
    c.boolean(s["evaluation"]["calibration"], "evaluation.calibration")
    if s["tune"] is not None:
        if not isinstance(s["tune"], dict):
            c.expect("tune", "a mapping (checked by bench.tune)", s["tune"])
        from bench import tune  # its schema lives with the tuner
        s["tune"] = tune.validate(c.plain(s["tune"], "tune"), file, s)

    s["backbones"] = _entries(c, s["backbones"], "backbones", backbones.names(), "backbone",
                              {"name": REQUIRED, "label": None, "overrides": None})
    s["methods"] = _entries(c, s["methods"], "methods", methods.names(), "method",
                            {"name": REQUIRED, "label": None, "options": None})
    for i, e in enumerate(s["methods"]):
        _method_options(c, e, f"methods[{i}]")
        if e["options"].get("temperature") == TUNED and s["tune"] is None:
            c.fail(f"methods[{i}].options.temperature",
                   "temperature: tuned needs a tune: section in the suite (docs/tuning.md)")

    num_classes, input_size = dataset_shape(s["dataset"])
    slug = slugify(s["name"])
    runs = []
    for i, b in enumerate(s["backbones"]):
        bpath = f"backbones[{i}]"
        info = _backbone(c, b, bpath, num_classes, input_size, s["dataset"]["name"])
        budgets = _budgets_for(c, s["budgets"], info, b)
        for j, m in enumerate(s["methods"]):
            _check_method_on(c, m, f"methods[{j}]", info, b, num_classes,
                             s["training"]["epochs"])
            for seed in s["seeds"]:
                config = {
                    "code_version": bench.__version__,
                    "dataset": s["dataset"],
                    "num_classes": num_classes,
                    "input_size": list(input_size),
                    "training": s["training"],
                    "backbone": b,
                    "method": m,
                    "seed": seed,
                    "budgets_mmacs": budgets,
                    "evaluation": s["evaluation"],
                }
                if m["options"].get("temperature") == TUNED:
                    config["tune"] = s["tune"]  # how t_n is chosen is part of the run
                config = _plain_copy(config)
                runs.append(RunSpec(
                    run_id=f"{b['label']}--{m['label']}--s{seed}--{run_hash(config)}",
                    suite_slug=slug, backbone_name=b["name"], backbone_label=b["label"],
                    overrides=config["backbone"]["overrides"], method_name=m["name"],
                    method_label=m["label"], method_options=config["method"]["options"],
                    seed=seed, num_classes=num_classes, input_size=list(input_size),
                    exit_mmacs=list(info.exit_mmacs), budgets_mmacs=budgets, config=config))
    return _plain_copy(s), runs


def _budgets_for(c: _Checker, budgets: dict, info: BackboneInfo, backbone: dict) -> list[float]:
    """Absolute MMACs for one backbone, each between exit 1's and the last exit's cost."""
    lo, hi = info.exit_mmacs[0], info.exit_mmacs[-1]
    if budgets["fractions"] is not None:
        key, values = "fractions", [round(f * hi, 6) for f in budgets["fractions"]]
    else:
        key, values = "mmacs", [float(v) for v in budgets["mmacs"] or []]
    for i, (given, mmacs) in enumerate(zip(budgets[key] or [], values)):
        if not lo <= mmacs <= hi:
            what = (f"{given} of the last exit's cost is {mmacs:.2f} MMACs, which"
                    if key == "fractions" else f"{given} MMACs")
            c.fail(f"budgets.{key}[{i}]",
                   f"{what} is outside the range of backbone {backbone['label']!r}: "
                   f"{lo:.2f}..{hi:.2f} MMACs (exit 1 .. exit {info.num_exits})")
    return values


def _parse_override(file: str, text: str) -> tuple[list, Any]:
    key, eq, value = text.partition("=")
    parts: list = []
    for seg in key.strip().split("."):
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)", seg)
        if not eq or not m:
            raise SuiteError(file, "", f"override {text!r}: expected KEY.PATH=VALUE, e.g. "
                                       "training.epochs=3 or methods[1].options.temperature=0.25")
        parts += [m.group(1)] + [int(i) for i in re.findall(r"\d+", m.group(2))]
    try:
        parsed = yaml.load(value, Loader=_Loader)
    except yaml.YAMLError as err:
        raise SuiteError(file, "", f"override {text!r}: value: {_yaml_error(err)}") from None
    return parts, parsed


def _apply_override(file: str, raw: dict, text: str) -> str:
    """Set one KEY.PATH=VALUE in the raw suite; returns the key path."""
    parts, value = _parse_override(file, text)
    node, path = raw, ""

    def bad(message):
        raise SuiteError(file, path, f"override {text!r}: {message}")

    for part, nxt in zip(parts, parts[1:] + [None]):
        if isinstance(part, str):
            if not isinstance(node, dict):
                bad(f"{path or 'the suite'} is {_found(node)}, not a mapping")
            if nxt is not None and node.get(part) is None:
                if isinstance(nxt, int):
                    bad(f"{_join(path, part)} is not set, so it has no item [{nxt}]")
                node[part] = {}
        else:
            if not isinstance(node, list):
                bad(f"{path} is {_found(node)}, not a list")
            if part >= len(node):
                bad(f"{path} has {len(node)} items, so there is no [{part}]")
        path = _join(path, part)
        if nxt is None:
            node[part] = value
        else:
            if isinstance(node[part], str) and isinstance(nxt, str):
                node[part] = {"name": node[part]}  # "boostnet" -> {name: boostnet, ...}
            node = node[part]
    return path


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> Suite:
    """Read, override (``key.path=yaml-value``), validate and expand a suite file."""
    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise SuiteError(file, "", "no such file" if not p.exists() else "not a file")
    try:
        with open(p, encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_Loader)
    except yaml.YAMLError as err:
        raise SuiteError(file, "", _yaml_error(err)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteError(file, "", f"cannot read: {err}") from None
    return build_suite(raw, file, overrides)


def build_suite(raw: Any, file: str = "<suite>", overrides: Sequence[str] = ()) -> Suite:
    """Validate and expand an already parsed suite (a dict as YAML gives it)."""
    if not isinstance(raw, dict):
        raise SuiteError(file, "", f"expected a mapping of suite keys ({', '.join(TOP_LEVEL)}), "
                                   f"found {'an empty file' if raw is None else _found(raw)}")
    raw = copy.deepcopy(raw)
    set_paths = [(_apply_override(file, raw, text), text) for text in overrides]
    try:
        config, runs = _resolve(raw, file)
    except SuiteError as err:
        # Say which override a problem comes from.
        hits = [text for p, text in set_paths
                if err.path == p or err.path.startswith((p + ".", p + "["))
                or p.startswith((err.path + ".", err.path + "["))]
        if not hits:
            raise
        raise SuiteError(file, err.path,
                         f"{err.message} (set by override {hits[-1]!r})") from None
    return Suite(name=config["name"], slug=slugify(config["name"]), path=file, config=config,
                 runs=runs, overrides=list(overrides))


def select(runs: Sequence[RunSpec], pattern: str) -> list[RunSpec]:
    """Runs whose id or ``backbone/method/seed`` labels match the shell-style ``pattern``."""
    return [r for r in runs
            if fnmatch.fnmatchcase(r.run_id, pattern) or fnmatch.fnmatchcase(r.labels, pattern)]
