"""Each method and exit rule of a suite tried on dummy logits of each backbone's exits, so
that what depends on the number of exits or classes (per-exit temperatures, loss weights
or product weights, a method's training stages) fails before anything trains."""
from __future__ import annotations

import torch

import methods
from bench.config.checker import Checker, join, named_key
from bench.config.costs import BackboneInfo
from bench.config.schema import BackboneEntry, EvaluationConfig, MethodEntry, TrainingConfig
from bench.config.types import thaw
from bench.evaluate import combiners as exit_combiners
from bench.evaluate import criteria as exit_criteria


def create(c: Checker, m: MethodEntry, path: str) -> methods.Method:
    """The method, with its declared default standing in for each ``tuned`` option."""
    try:
        return m.create()
    except (TypeError, ValueError) as err:
        c.fail(_option_path(path, m, err), f"method {m.name!r}: {err}")


def _option_path(path: str, m: MethodEntry, err: Exception) -> str:
    option = getattr(err, "option", None)
    if option in m.options:
        return join(join(path, "options"), option)
    return named_key(join(path, "options"), dict(m.options), str(err))


def method(c: Checker, m: MethodEntry, path: str, info: BackboneInfo, b: BackboneEntry,
           num_classes: int, epochs: int) -> list[methods.Stage]:
    """The method's combine, loss, gradient rescaling and stages on the backbone's exits,
    and one epoch at least per training stage. Returns the stages."""
    method_ = create(c, m, path)
    on = f"on backbone {b.label!r} ({info.num_exits} exits)"
    attrs = {"grad_rescale": False} if info.has_grad_rescale else {}
    stand_in = type(info.class_name, (), attrs)()  # prepare() only looks at grad_rescale
    try:
        outs = [torch.zeros(2, num_classes) for _ in range(info.num_exits)]
        method_.combine(outs)
        method_.loss(outs, torch.zeros(2, dtype=torch.long))
        method_.prepare(stand_in)
        stages = method_.stages(info.num_exits)
    except (TypeError, ValueError) as err:
        c.fail(_option_path(path, m, err), f"method {m.label!r} {on}: {err}")
    try:
        methods.split_epochs(epochs, stages)
    except ValueError as err:
        c.fail("training.epochs", f"method {m.label!r} {on}: {err}")
    return stages


def cuda_graphs(c: Checker, training: TrainingConfig, m: MethodEntry, path: str,
                stages: list[methods.Stage]) -> None:
    """training.cuda_graphs true with a method whose step cannot be recorded (its
    ``graph_blocker``): refused, naming the method."""
    if training.cuda_graphs is not True:
        return
    method_ = create(c, m, path)
    for stage in stages:
        why = method_.graph_blocker(stage)
        if why:
            c.fail("training.cuda_graphs", f"training.cuda_graphs is true, but method "
                                           f"{m.label!r} ({path}) cannot be recorded as a "
                                           f"CUDA graph: {why}; use auto (its steps then run "
                                           "eagerly) or false")


def rules(c: Checker, ev: EvaluationConfig, n_exits: int, num_classes: int,
          label: str) -> None:
    """Every exit rule on dummy logits of the backbone's shape [n_exits, 2, classes]."""
    logits = torch.zeros(n_exits, 2, num_classes)
    for i, spec in enumerate(map(thaw, ev.combiners)):
        try:
            exit_combiners.create(spec.pop("name"), **spec)(logits)
        except ValueError as err:
            c.fail(f"evaluation.combiners[{i}]", f"on backbone {label!r} ({n_exits} exits): "
                                                 f"{err}")
    for i, name in enumerate(ev.criteria):
        try:
            exit_criteria.create(name).score(logits)
        except ValueError as err:
            c.fail(f"evaluation.criteria[{i}]", f"on backbone {label!r} ({num_classes} "
                                                f"classes): {err}")
