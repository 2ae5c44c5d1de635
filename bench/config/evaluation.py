"""The suite's ``evaluation:`` section: post-hoc calibration and the exit rules every run's
metrics.json holds.

    evaluation:
      criteria: [max_softmax, entropy, margin, patience]       # bench.evaluate.criteria
      combiners: [none, product, {name: product, weights: linear}, caching]
      global_threshold: true      # also one threshold at every exit (DeeBERT/ZTW style)

Every (combiner, criterion) pair is evaluated from the saved logits; none of these keys is
part of a run id, so adding a rule later re-evaluates finished runs without retraining.
Names come from the registries (plugins may add rules); a combiner's options are checked by
building it, and once per backbone on dummy logits (product weights need one per exit).
"""
from __future__ import annotations

import json
from typing import Any

import torch

from bench.config import defaults as D
from bench.config.checker import Checker, join
from bench.config.schema import EvaluationConfig, freeze, thaw
from bench.evaluate import combiners as exit_combiners
from bench.evaluate import criteria as exit_criteria


def validate(c: Checker, value: Any) -> EvaluationConfig:
    e = c.mapping(value, "evaluation", D.EVALUATION)
    calibration = c.boolean(e["calibration"], "evaluation.calibration")
    crits = c.items(e["criteria"], "evaluation.criteria", lambda v, p: c.choice(
        v, p, exit_criteria.names(), "exit criterion"))
    _distinct(c, "evaluation.criteria", crits)
    combs = c.items(e["combiners"], "evaluation.combiners", lambda v, p: _combiner(c, v, p))
    _distinct(c, "evaluation.combiners", combs)
    global_threshold = c.boolean(e["global_threshold"], "evaluation.global_threshold")
    return EvaluationConfig(calibration, tuple(crits), tuple(freeze(s) for s in combs),
                            global_threshold)


def _combiner(c: Checker, value: Any, path: str) -> dict:
    """``name`` or ``{name: ..., option: value}`` -> ``{"name": ..., **options}``."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        c.expect(path, "a combiner name or a mapping with a name key", value)
    name = c.choice(value["name"], join(path, "name"), exit_combiners.names(), "combiner")
    options = c.plain({k: v for k, v in value.items() if k != "name"}, path)
    try:
        exit_combiners.create(name, **options)
    except ValueError as err:
        c.fail(path, str(err))
    return {"name": name, **options}


def _distinct(c: Checker, path: str, items: list) -> None:
    seen = set()
    for i, item in enumerate(items):
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            c.fail(join(path, i), f"{item!r} is listed twice")
        seen.add(key)


def check_on_backbone(c: Checker, ev: EvaluationConfig, n_exits: int, num_classes: int,
                      label: str) -> None:
    """Every rule applied to dummy logits of the backbone's shape [n_exits, 2, classes]:
    options that depend on the number of exits (product weights) or classes fail here,
    before anything trains."""
    logits = torch.zeros(n_exits, 2, num_classes)
    for i, spec in enumerate(ev.combiners):
        spec = thaw(spec)
        try:
            exit_combiners.create(spec["name"], **{k: v for k, v in spec.items()
                                                   if k != "name"})(logits)
        except ValueError as err:
            c.fail(f"evaluation.combiners[{i}]", f"on backbone {label!r} ({n_exits} exits): "
                                                 f"{err}")
    for i, name in enumerate(ev.criteria):
        try:
            exit_criteria.create(name).score(logits)
        except ValueError as err:
            c.fail(f"evaluation.criteria[{i}]", f"on backbone {label!r} ({num_classes} "
                                                f"classes): {err}")
