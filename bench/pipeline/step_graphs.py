"""A stage's training step as the trainer and ``bench speed`` take it: the method's
``train_step`` as it is, or recorded as a CUDA graph and replayed (``training.cuda_graphs``;
bench.engine.cuda_graphs does the recording).

Whether a step is recorded: :func:`bench.engine.cuda_graphs.decide` on the device, the
method's ``graph_blocker`` for the stage (methods.Method) and the training settings that
rule it out (fp16's gradient scaler, ``training.compile``, several processes). ``auto``
falls back to eager steps with one warning line saying why; ``true`` is an error.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

import torch

import methods
from bench.engine import cuda_graphs, precision
from bench.errors import UsageError

log = logging.getLogger("bench.pipeline")

TrainStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_device(setting, device: torch.device | str) -> None:
    """``training.cuda_graphs: true`` where the runs of this process train off CUDA: a
    UsageError naming the key and the device, before any run starts."""
    try:
        cuda_graphs.decide(setting, device, who="this machine")
    except cuda_graphs.CudaGraphsRefused as err:
        raise UsageError(str(err)) from None


def blockers(method: methods.Method, stage: methods.Stage, *, resolved_precision: str,
             compile: bool = False, world_size: int = 1) -> list[str]:
    """Why a step of ``method`` in ``stage`` cannot be recorded (empty: it can)."""
    own = method.graph_blocker(stage)
    return ([f"method {method.name!r}: {own}"] if own else []) + cuda_graphs.setting_blockers(
        resolved_precision, compile, world_size)


def training_step(method: methods.Method, ctx: methods.StepContext, *, setting, device,
                  resolved_precision: str, compile: bool = False, world_size: int = 1,
                  recorder=None) -> TrainStep:
    """``step(x, y) -> per-sample losses`` for stage ``ctx.stage_index`` of ``method``:
    eager, or (``setting`` true or auto, and nothing against it) a replayed CUDA graph.
    ``recorder``: the recording machinery (tests on a CPU pass a stand-in)."""
    eager = lambda x, y: method.train_step(ctx, x, y)  # noqa: E731
    device = torch.device(device)
    if recorder is None:
        use, note = cuda_graphs.decide(setting, device, blockers(
            method, ctx.stage, resolved_precision=resolved_precision, compile=compile,
            world_size=world_size), who=f"method {method.name!r}")
        if note:
            log.warning("training.cuda_graphs is auto; %s", note)
        if not use:
            return eager
    return graphed(method, ctx, device, resolved_precision, recorder)


def graphed(method: methods.Method, ctx: methods.StepContext, device: torch.device,
            resolved_precision: str, recorder=None) -> cuda_graphs.GraphedStep:
    """The step recorded as a CUDA graph: recorded with a context whose finiteness check
    keeps the loss (checked after each replay by the real one) and whose autocast keeps no
    cache of cast weights."""
    kept: dict = {}
    recording = replace(ctx, check_finite=lambda loss, samples: kept.update(
        loss=loss, samples=samples), autocast=precision.autocast(resolved_precision, device,
                                                                  cache=False))
    return cuda_graphs.GraphedStep(
        lambda x, y: method.train_step(ctx, x, y),
        lambda x, y: method.train_step(recording, x, y),
        hyperparameters=lambda: optimizer_constants(ctx.optimizer),
        after_replay=lambda: ctx.check_finite(kept["loss"], kept["samples"]),
        prepare=lambda: ctx.optimizer.zero_grad(set_to_none=True),
        device=device, recorder=recorder)


def optimizer_constants(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Every param group's hyperparameters (not its parameters): what a recorded SGD step
    holds as constants."""
    return [{k: v for k, v in group.items() if k != "params"}
            for group in optimizer.param_groups]
