"""What the results files hold, as far as the views rely on it: a file that parses but holds
something else (a hand edit, another program's file) is unreadable like a truncated one,
with the key and what was found named, instead of a traceback in the middle of a report.

A spec is a kind (``NUMBER``, ``INT``, ``str``, ``bool``, ``dict``, ``list``, ``None``) or a
tuple of kinds, ``[spec]`` for a list of items, or ``{key: spec}`` for an object whose
listed keys (present ones; ``Required`` ones always) must match; other keys are free, so
newer files with more keys still read. docs/results-format.md describes every key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NUMBER = "number"  # int or float, not bool; NaN and infinities are numbers
INT = "integer"
NONE = type(None)


@dataclass(frozen=True)
class Required:
    spec: Any


def _is(value: Any, kind: Any) -> bool:
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is None or kind is NONE:
        return value is None
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _name(kind: Any) -> str:
    if isinstance(kind, (dict, list)):
        return "an object" if isinstance(kind, dict) else "an array"
    names = {NUMBER: "a number", INT: "an integer", str: "a string", bool: "true or false",
             dict: "an object", list: "an array", None: "null", NONE: "null"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def found(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return {dict: "an object", list: "an array"}.get(type(value), "a value")


def problem(value: Any, spec: Any, path: str = "") -> str | None:
    """Why ``value`` does not match ``spec`` (naming the key path), or None."""
    where = path or "the file"
    if isinstance(spec, Required):
        spec = spec.spec
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{where} is {found(value)}, expected an object"
        for key, sub in spec.items():
            if key not in value:
                if isinstance(sub, Required):
                    return f"{_join(path, key)} is missing"
                continue
            why = problem(value[key], sub, _join(path, key))
            if why:
                return why
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where} is {found(value)}, expected an array"
        for i, item in enumerate(value):
            why = problem(item, spec[0], f"{path}[{i}]")
            if why:
                return why
        return None
    if isinstance(spec, tuple):  # alternatives
        inner = [problem(value, alt, path) for alt in spec if _same_shape(value, alt)]
        if any(why is None for why in inner):
            return None
        return inner[0] if inner else \
            f"{where} is {found(value)}, expected {' or '.join(_name(k) for k in spec)}"
    if not _is(value, spec):
        return f"{where} is {found(value)}, expected {_name(spec)}"
    return None


def _same_shape(value: Any, alt: Any) -> bool:
    """Whether ``alt`` is the alternative ``value`` is meant to be (an object for a dict
    spec, an array for a list spec, else its kind)."""
    if isinstance(alt, dict):
        return isinstance(value, dict)
    if isinstance(alt, list):
        return isinstance(value, list)
    return _is(value, alt)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


OPT_STR, OPT_INT, OPT_NUM = (str, None), (INT, None), (NUMBER, None)
NUMBERS = [NUMBER]
NAMED = (str, {"name": OPT_STR, "label": OPT_STR}, None)  # a name, or {name, label, ...}

STATUS = {"state": OPT_STR, "error": OPT_STR, "traceback": OPT_STR, "epoch": OPT_INT,
          "epochs": OPT_INT, "updated": OPT_STR, "worker": OPT_STR, "fingerprint": OPT_STR}
CONFIG = {"run_id": OPT_STR, "suite": OPT_STR, "seed": OPT_INT, "backbone": NAMED,
          "method": (str, {"name": OPT_STR, "label": OPT_STR, "options": (dict, None)}, None),
          "dataset": NAMED}
ENVIRONMENT = {key: OPT_STR for key in ("torch", "torchvision", "python", "device",
                                        "code_version", "git_commit", "date", "hostname")}
ENVIRONMENT.update(threads=OPT_INT, code=(dict, None))
COSTS = {"mmacs": NUMBERS, "params": [NUMBER], "counter": OPT_STR, "input_size": [INT]}
HELDOUT_INDEX = {"indices": [INT]}
METRICS = {
    "anytime": [{"exit": INT, "mmacs": OPT_NUM, "top1": OPT_NUM, "top5": OPT_NUM}],
    "heldout_anytime": [{"exit": INT, "top1": OPT_NUM}],
    "budgeted": [{"budget_mmacs": NUMBER, "accuracy": OPT_NUM, "mmacs": OPT_NUM,
                  "thresholds": NUMBERS, "exit_shares": NUMBERS, "q": OPT_NUM,
                  "heldout_mmacs": OPT_NUM}],
    "curve": [{"q": NUMBER, "accuracy": NUMBER, "mmacs": NUMBER, "exit_shares": NUMBERS,
               "thresholds": NUMBERS}],
    "calibration": (dict, None), "tuned": (dict, None)}
SUITE = {"name": OPT_STR, "description": OPT_STR, "dataset": NAMED, "backbones": [NAMED],
         "methods": [{"name": OPT_STR, "label": OPT_STR, "options": (dict, None),
                      "reference": (bool, None), "paper": OPT_STR}],
         "seeds": [INT], "run_count": INT, "run_ids": [str], "baseline": OPT_STR,
         "plugins": [str], "budgets": (dict, None), "training": (dict, None),
         "evaluation": (dict, None), "tune": (dict, None)}
BEST_TRIAL = {"study": Required(str), "storage": Required(str), "backbone": Required(str),
              "method": Required(str), "options": Required(dict), "params": Required(dict),
              "seed": OPT_INT, "objective": OPT_STR, "trial": OPT_INT, "value": OPT_NUM,
              "heldout_anytime": (list, None), "baseline": (dict, None),
              "trials": (dict, None)}

# CSV columns that must be numbers (NaN allowed) where present.
HISTORY_NUMERIC = ("epoch", "stage", "exit", "lr", "train_loss", "effective_share",
                   "heldout_top1")
SUMMARY_NUMERIC = ("seed", "exit", "budget_mmacs", "mmacs", "top1", "top5")
