"""What validation needs to know of a backbone: built once per (name, overrides, classes)
in a process, with its per-exit fvcore cost; and the budgets resolved against that cost."""
from __future__ import annotations

import json
from dataclasses import dataclass

from bench import backbones, flops
from bench.config.checker import Checker, join, named_key
from bench.config.schema import BackboneEntry, BudgetsConfig, thaw


@dataclass(frozen=True)
class BackboneInfo:
    num_exits: int
    input_size: tuple[int, int, int]
    exit_mmacs: tuple[float, ...]  # cumulative fvcore MACs / 1e6 per exit
    class_name: str
    has_grad_rescale: bool


_BACKBONES: dict[tuple, BackboneInfo] = {}


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
        values = [round(f * hi, 6) for f in given]
    else:
        key, given = "mmacs", budgets.mmacs or ()
        values = [float(v) for v in given]
    for i, (g, mmacs) in enumerate(zip(given, values)):
        if not lo <= mmacs <= hi:
            what = (f"{g} of the last exit's cost is {mmacs:.2f} MMACs, which"
                    if key == "fractions" else f"{g} MMACs")
            c.fail(f"budgets.{key}[{i}]",
                   f"{what} is outside the range of backbone {label!r}: "
                   f"{lo:.2f}..{hi:.2f} MMACs (exit 1 .. exit {info.num_exits})")
    return values
