"""One stage's training step set up: the one setup the trainer (bench.pipeline.train) and
the speed measurement (bench.pipeline.speed) share, so that a step ``bench speed`` times is
the step a run takes.

For stage ``stage_index`` of a method installed on a model: what trains (the trainable
exits' parameter groups, narrowed by the stage), the optimizer over it built from the
suite's ``training.optimizer`` values, the forward to call (DDP-wrapped, compiled where
asked: bench.engine.compiling), and ``step(loss)`` under the precision's gradient scaler
(bench.engine.precision), gathered in the :class:`methods.StepContext` that a method's
``train_step`` gets.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

import methods
from bench.config import OptimizerConfig
from bench.engine import compiling, precision


def make_optimizer(params: list[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD, the only optimizer a suite can name (the paper's)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def stage_context(model: nn.Module, method: methods.Method,
                  groups: Sequence[Sequence[nn.Parameter]], stage_index: int,
                  optimizer: OptimizerConfig, *, scaler: torch.amp.GradScaler,
                  autocast, device: torch.device | str, compile: bool = False,
                  wrap: Callable[[nn.Module], nn.Module] | None = None,
                  stage: methods.Stage | None = None, **hooks) -> methods.StepContext:
    """Stage ``stage_index`` (0-based) of ``method``, installed on ``model``, ready to
    step: ``requires_grad`` set on what the stage trains (``groups``: the parameters per
    exit, ``parameters_per_exit``), the optimizer over those, the forward ``wrap``-ped
    and, with ``compile``, compiled for ``device``. ``hooks``: the StepContext's
    ``check_finite`` and ``all_reduce_mean`` where the caller has its own. ``stage``: the
    stage itself where it is not the method's own (a training regime's, methods.plan)."""
    stage = stage or method.stages(model.num_exits)[stage_index]
    params = methods.stage_parameters(model, groups, stage)
    sgd = make_optimizer(params, optimizer)
    net = wrap(model) if wrap else model
    if compile:
        # Compiled once per stage (each stage's forward stops at another exit); on CUDA
        # with CUDA graphs for the fixed batch size. Measured gains: docs/benchmarks.md.
        net = compiling.compile_forward(net, device)
    return methods.StepContext(net, model, sgd, stage, stage_index,
                               step=precision.optimizer_step(sgd, scaler), autocast=autocast,
                               **hooks)
