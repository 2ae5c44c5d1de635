"""What validation needs to know of a backbone: built once per (name, overrides, classes)
in a process, with its per-exit fvcore cost; the cost of each method on it (its modules
counted by fvcore, plus its analytic count of what fvcore cannot see); and the budgets.

Costs are per (backbone, method): IMTA's and ZTW's exits cost more than the backbone's
own. Budgets are per backbone: ``fractions`` are of the backbone's own last exit, so every
method on a backbone is evaluated at the same absolute MMACs; each budget must still lie
within every method's range (exit 1 .. last exit, the method's modules included).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import methods
from bench import backbones, flops
from bench.config.checker import Checker, join, named_key
from bench.config.schema import BackboneEntry, BudgetsConfig, MethodEntry, thaw


@dataclass(frozen=True)
class BackboneInfo:
    num_exits: int
    input_size: tuple[int, int, int]
    exit_mmacs: tuple[float, ...]  # cumulative fvcore MACs / 1e6 per exit
    class_name: str
    has_grad_rescale: bool


_BACKBONES: dict[tuple, BackboneInfo] = {}
_METHOD_COSTS: dict[tuple, tuple[float, ...]] = {}


def backbone_info(name: str, overrides: dict, num_classes: int) -> BackboneInfo:
    """Build the backbone and count its per-exit cost; cached per process (and the count on
    disk, bench.flops). Raises what the constructor raises."""
    key = (name, json.dumps(overrides, sort_keys=True), num_classes)
    if key not in _BACKBONES:
        model = backbones.create(name, num_classes=num_classes, **overrides)
        macs = flops.per_exit_cached(model)
        _BACKBONES[key] = BackboneInfo(
            model.num_exits, tuple(model.input_size), tuple(m / 1e6 for m in macs),
            type(model).__name__, hasattr(model, "grad_rescale"))
    return _BACKBONES[key]


def check_backbone(c: Checker, b: BackboneEntry, path: str, num_classes: int,
                   input_size: tuple, dataset: str) -> BackboneInfo:
    overrides = thaw(b.overrides)
    try:
        info = backbone_info(b.name, overrides, num_classes)
    except Exception as err:  # the constructor's own message says what is wrong
        where = named_key(join(path, "overrides"), overrides, str(err)) if overrides else path
        c.fail(where, f"backbone {b.name!r} cannot be built with overrides {overrides}: "
                      f"{type(err).__name__}: {err}")
    if info.input_size != tuple(input_size):
        c.fail(path, f"backbone {b.label!r} takes inputs of size {list(info.input_size)}, "
                     f"data set {dataset!r} gives {list(input_size)}")
    return info


def budgets_for(c: Checker, budgets: BudgetsConfig, info: BackboneInfo, label: str
                ) -> list[float]:
    """Absolute MMACs for one backbone, each between exit 1's and the last exit's cost."""
    lo, hi = info.exit_mmacs[0], info.exit_mmacs[-1]
    if budgets.fractions is not None:
        key, given = "fractions", budgets.fractions
        values = [inside(round(f * hi, 6), f * hi, lo, hi) for f in given]
    else:
        key, given = "mmacs", budgets.mmacs or ()
        values = [float(v) for v in given]
    for i, (g, mmacs) in enumerate(zip(given, values)):
        if not lo <= mmacs <= hi:
            v, low, high = shown(mmacs, lo, hi)
            what = (f"{g} of the last exit's cost is {v} MMACs, which"
                    if key == "fractions" else f"{v} MMACs")
            c.fail(f"budgets.{key}[{i}]",
                   f"{what} is outside the range of backbone {label!r}: "
                   f"{low}..{high} MMACs (exit 1 .. exit {info.num_exits})")
    return values


def inside(rounded: float, exact: float, lo: float, hi: float) -> float:
    """A budget rounded to 6 decimals (stable run ids), kept within lo..hi where the exact
    one lies there: fraction 1.0 of a last exit costing 5.2899996 MMACs is 5.2899996, not
    5.29 (outside)."""
    return min(max(rounded, lo), hi) if lo <= exact <= hi else rounded


def shown(value: float, lo: float, hi: float) -> tuple[str, str, str]:
    """``value``, ``lo`` and ``hi`` with as many decimals as it takes (at least 2) for a
    value outside lo..hi to read as outside: 5.2900001 against ..5.29, not 5.29 against
    ..5.29."""
    for digits in range(2, 13):
        text = [f"{x:.{digits}f}" for x in (value, lo, hi)]
        v, low, high = (float(t) for t in text)
        if (lo <= value <= hi) == (low <= v <= high):
            return text[0], text[1], text[2]
    return repr(value), repr(lo), repr(hi)


def method_mmacs(c: Checker, info: BackboneInfo, b: BackboneEntry, num_classes: int,
                 m: MethodEntry, method: methods.Method, path: str) -> tuple[float, ...]:
    """Cumulative MMACs per exit of ``method`` (its options as validated; tuned ones at
    their defaults, which change no module) on backbone ``b``: the backbone built with
    the method's modules installed, counted by fvcore (cached like the backbone's), plus
    the method's analytic MACs. The backbone's own cost where the method adds nothing."""
    key = (b.name, json.dumps(thaw(b.overrides), sort_keys=True), num_classes, m.name,
           json.dumps(method.options(), sort_keys=True), info.exit_mmacs)
    if key in _METHOD_COSTS:
        return _METHOD_COSTS[key]
    traced = None
    if type(method).build_modules is not methods.Method.build_modules:
        model = backbones.create(b.name, num_classes=num_classes, **thaw(b.overrides))
        try:
            method.install(model)
        except (TypeError, ValueError) as err:
            c.fail(path, f"method {m.label!r} cannot be installed on backbone {b.label!r}: "
                         f"{err}")
        if methods.has_modules(model):
            traced = flops.per_exit_cached(model)
    extra = itertools.accumulate(method.analytic_macs(info.num_exits, num_classes))
    if traced is None:  # exit n runs the analytic work of exits 1..n
        cost = tuple(v + a / 1e6 for v, a in zip(info.exit_mmacs, extra))
    else:
        cost = tuple((t + a) / 1e6 for t, a in zip(traced, extra))
    _METHOD_COSTS[key] = cost
    return _METHOD_COSTS[key]


def check_budgets_for_method(c: Checker, budgets: BudgetsConfig, values: list[float],
                             exit_mmacs: tuple[float, ...], b: BackboneEntry,
                             m: MethodEntry) -> None:
    """Every budget within method ``m``'s range on ``b`` (its modules included)."""
    key = "fractions" if budgets.fractions is not None else "mmacs"
    lo, hi = exit_mmacs[0], exit_mmacs[-1]
    for i, v in enumerate(values):
        if not lo <= v <= hi:
            value, low, high = shown(v, lo, hi)
            c.fail(f"budgets.{key}[{i}]",
                   f"{value} MMACs is outside the range of method {m.label!r} on backbone "
                   f"{b.label!r}: {low}..{high} MMACs with the method's modules")
