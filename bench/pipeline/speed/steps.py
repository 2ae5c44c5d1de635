"""Our training step, set up as the trainer sets it up, and the batches it is timed on.

A step is a function (x, y) -> None that takes one training step (it does not wait for the
GPU); a round (bench.pipeline.speed.rounds) wraps it with its batches and a
synchronisation.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

import methods
from bench.backbones import layout
from bench.backbones.common import parameters_per_exit
from bench.config import OptimizerConfig
from bench.data.splits import TensorSplits
from bench.engine import compiling, precision
from bench.pipeline.step_graphs import training_step
from bench.pipeline.step_setup import stage_context

Step = Callable[[torch.Tensor, torch.Tensor], None]


def method_step(model: nn.Module, method: methods.Method, optimizer: OptimizerConfig, *,
                stage_index: int = 0, channels_last: bool = False, device: str = "cpu",
                precision_setting: str = "fp32", compiled: bool = False,
                plain: bool = False, cuda_graphs: bool | str = False) -> Step:
    """One training step of ``method`` in stage ``stage_index`` on ``model``, which is set
    up as the trainer sets it up (bench.pipeline.step_setup: what trains, the frozen
    parts' batch-norm policy, SGD of the ``optimizer`` values over the rest, the
    precision's autocast and gradient scaler, the check that the loss is finite, and with
    ``compiled`` the trainer's torch.compile). ``channels_last``: the model and its input
    in that memory format (``training.channels_last``); ``plain``: every tensor NCHW
    (bench.backbones.layout.plain_layout); ``cuda_graphs``: ``training.cuda_graphs``, the
    step recorded as a CUDA graph and replayed as the trainer does
    (bench.pipeline.step_graphs)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    method.install(model)  # its modules built where the model is, then moved with it
    model.to(device=device, memory_format=memory_format)
    groups = parameters_per_exit(model)  # in the inference configuration, as the trainer
    method.begin_training(model, torch.device(device))
    method.configure(model, stage_index)
    resolved = precision.resolve(precision_setting, device)
    ctx = stage_context(model, method, groups, stage_index, optimizer,
                        scaler=precision.grad_scaler(resolved, device),
                        autocast=precision.autocast(resolved, device), device=device,
                        compile=compiled)
    methods.train_mode(model, ctx.stage.frozen_bn)
    train = training_step(method, ctx, setting=cuda_graphs, device=device,
                          resolved_precision=resolved, compile=compiled)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if compiled:
            compiling.begin_step(device)
        with layout.plain_layout() if plain else contextlib.nullcontext():
            train(x.contiguous(memory_format=memory_format), y)

    return step


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def random_batch(batch_size: int, input_size: Sequence[int], num_classes: int, seed: int,
                 device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch_size, *input_size, generator=g).to(device),
            torch.randint(0, num_classes, (batch_size,), generator=g).to(device))


def fixed_round(step: Step, x: torch.Tensor, y: torch.Tensor, device: str
                ) -> Callable[[], None]:
    """``step`` on the batch (x, y) as a function of no arguments that waits for the GPU."""
    def fixed() -> None:
        step(x, y)
        synchronize(device)

    return fixed


def epoch_data(batch_size: int, steps: int, input_size: Sequence[int], num_classes: int,
               seed: int) -> TensorSplits:
    """Random uint8 images, ``steps`` batches' worth, served as the trainer's in-memory data
    (on-device crop and flip, normalisation)."""
    g = torch.Generator().manual_seed(seed)
    n = batch_size * steps
    images = torch.randint(0, 256, (n, *input_size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    empty = torch.zeros(0, dtype=torch.long)
    return TensorSplits("random", num_classes, train_images=images, train_labels=labels,
                        test_images=images[:1], test_labels=labels[:1],
                        train_idx=torch.arange(n), heldout_idx=empty, test_idx=empty[:0],
                        mean=[0.5] * input_size[0], std=[0.25] * input_size[0])


def epoch_round(step: Step, data: TensorSplits, *, batch_size: int, device: str,
                seed: int) -> Callable[[], None]:
    """A function of no arguments taking one round: a pass over ``data`` in training
    batches (drawn and augmented on ``device``), then a synchronisation."""
    epochs: Iterator[int] = iter(range(sys.maxsize))

    def one_round() -> None:
        for x, y in data.batches("train", batch_size, device=device, epoch=next(epochs),
                                 seed=seed):
            step(x, y)
        synchronize(device)

    return one_round
