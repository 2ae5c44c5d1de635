"""What a training step gets from the trainer, and what trains in a stage.

The trainer (bench.pipeline.train) and the speed measurement (bench.pipeline.speed) both drive a
method through these, so a step timed by ``bench speed`` is the step a run takes.

A :class:`StepContext` is one stage's view of the training machinery: the forward to call
(DDP-wrapped or compiled where the suite asks), the bare model (for functional calls), the
stage's SGD optimizer and a ``step(loss)`` that does zero_grad, the (AMP-scaled) backward
and the optimizer step, a finiteness check that stops the run with a clear error, and an
all-reduce for gradients a method computes itself (e.g. with ``torch.autograd.grad``, which
DDP's hooks never see).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from methods.heads import ExitLinear, last_exit_parameters, method_parameters

TRAINS = ("all", "backbone", "method", "heads")  # Stage.trains
BN_POLICIES = ("eval", "train", "eval_all")  # Stage.frozen_bn
SCOPES = ("all", "last_exit", "other_exits")  # Stage.scope (methods.regimes)


@dataclass(frozen=True)
class Stage:
    """One training stage: exits are 0-based indices.

    ``trains`` narrows the parameters of the trainable exits' groups: ``all`` of them,
    only the ``backbone``'s (the method's modules stay frozen), only the ``method``'s
    modules (the backbone and its heads stay frozen), or the method's modules and the
    exits' final linear layers (``heads``: the rest of the backbone frozen). ``frozen_bn``
    is the batch-norm policy of frozen parts: ``eval`` keeps their statistics fixed,
    ``train`` lets them drift with the batches as IMTA's second stage does, ``eval_all``
    puts every wholly frozen module in eval mode, the dropout and drop-path inside it too.
    ``scope`` narrows what trains further, for the training regimes (methods.regimes):
    ``last_exit`` keeps only the parameters the last exit's logits depend on (the backbone
    and its final head, :func:`methods.heads.last_exit_parameters`), ``other_exits`` only
    the rest (the earlier exits' heads and the method's modules). ``name`` is what the
    stage is called in the training-cost record.
    """

    active_exits: tuple[int, ...]  # exits whose losses are summed
    trainable_exits: tuple[int, ...]  # exits whose parameter groups train (others frozen)
    epoch_share: float  # share of the run's epochs
    trains: str = "all"
    frozen_bn: str = "eval"
    name: str = "train"
    scope: str = "all"

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"Stage.scope must be one of {SCOPES}, got {self.scope!r}")
        if self.trains not in TRAINS:
            raise ValueError(f"Stage.trains must be one of {TRAINS}, got {self.trains!r}")
        if self.frozen_bn not in BN_POLICIES:
            raise ValueError(f"Stage.frozen_bn must be one of {BN_POLICIES}, got "
                             f"{self.frozen_bn!r}")

    @property
    def reach(self) -> int:
        """Exits the forward must compute: later exits are not needed in this stage."""
        return max(self.active_exits) + 1


def split_epochs(total: int, stages: Sequence[Stage]) -> list[int]:
    """Whole epochs per stage, proportional to the shares (largest remainder first); every
    stage gets one epoch at least."""
    if total < len(stages):
        raise ValueError(f"{len(stages)} training stages need at least {len(stages)} epochs, "
                         f"got {total}")
    if abs(sum(s.epoch_share for s in stages) - 1.0) > 1e-9 or \
            any(s.epoch_share <= 0 for s in stages):
        raise ValueError(f"stage shares must be positive and add up to 1, got "
                         f"{[s.epoch_share for s in stages]}")
    exact = [total * s.epoch_share for s in stages]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(stages)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    for i, c in enumerate(counts):  # a stage rounded to 0 takes an epoch from the longest
        if c == 0:
            counts[counts.index(max(counts))] -= 1
            counts[i] = 1
    return counts


def stage_parameters(model: nn.Module, groups: Sequence[Sequence[nn.Parameter]],
                     stage: Stage) -> list[nn.Parameter]:
    """Set requires_grad on what ``stage`` trains (the trainable exits' parameter groups,
    narrowed by ``stage.trains`` and ``stage.scope``), off everywhere else; returns the
    trained parameters."""
    keep = {id(p) for e in stage.trainable_exits for p in groups[e]}
    own = {id(p) for p in method_parameters(model)}
    if stage.scope != "all":
        path = {id(p) for p in last_exit_parameters(model)}
        keep = keep & (path - own) if stage.scope == "last_exit" else keep - path
    if stage.trains == "backbone":
        keep -= own
    elif stage.trains == "method":
        keep &= own
    elif stage.trains == "heads":
        keep &= own | {id(p) for m in model.modules() if isinstance(m, ExitLinear)
                       for p in m.parameters(recurse=False)}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: nn.Module, frozen_bn: str = "eval") -> None:
    """Train mode; with ``frozen_bn`` 'eval', modules whose parameters are all frozen go to
    eval mode, so that their batch-norm statistics stay as they were; with 'eval_all', every
    module whose parameters, its children's included, are all frozen goes to eval mode
    whole (its dropout and drop-path off as well)."""
    model.train()
    if frozen_bn == "train":
        return
    for m in model.modules():
        params = list(m.parameters(recurse=frozen_bn == "eval_all"))
        if params and not any(p.requires_grad for p in params):
            m.eval()


@dataclass(frozen=True)
class Passes:
    """A training step's work per loaded batch, in passes over all of its images: a forward
    over half the batch counts 0.5. ``second_order``: how many of the backward passes also
    differentiate through a first backward (create_graph). ``backward_through``: what the
    backward reaches (``model``, or ``method modules`` when the rest is frozen)."""

    forward: float = 1.0
    backward: float = 1.0
    second_order: float = 0.0
    optimizer_steps: int = 1
    backward_through: str = "model"

    def as_dict(self) -> dict:
        return {"forward": self.forward, "backward": self.backward,
                "second_order": self.second_order, "optimizer_steps": self.optimizer_steps,
                "backward_through": self.backward_through}


def _no_check(loss: Tensor, sample_losses: Tensor) -> None:
    if not torch.isfinite(loss.detach()).all():
        raise FloatingPointError(f"training loss is {loss.item()}")


def _no_reduce(tensors: list[Tensor]) -> None:
    return None


@dataclass
class StepContext:
    """One stage's training machinery, as a method's ``train_step`` sees it."""

    net: Callable  # the forward to call: net(x, num_exits=k) -> logits
    model: nn.Module  # the bare model (functional calls, method modules)
    optimizer: torch.optim.Optimizer  # SGD over the stage's trainable parameters
    stage: Stage
    stage_index: int  # 0-based
    step: Callable[[Tensor], None]  # zero_grad, backward, optimizer step
    autocast: Any = field(default_factory=contextlib.nullcontext)
    check_finite: Callable[[Tensor, Tensor], None] = _no_check  # (loss, sample losses)
    all_reduce_mean: Callable[[list[Tensor]], None] = _no_reduce  # in place, over ranks
    lr_factor: float = 1.0  # the schedule's factor this epoch (for a method's own optimizer)


def plain_step(optimizer: torch.optim.Optimizer) -> Callable[[Tensor], None]:
    """zero_grad, backward, step: what ``StepContext.step`` does without AMP."""

    def step(loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step
