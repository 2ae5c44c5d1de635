"""``torch.compile`` of a model's forward for training (``training.compile``).

On CUDA the forward is compiled with CUDA graphs (inductor's ``reduce-overhead`` mode): a
whole step's kernels are replayed as one graph, which removes the per-kernel launch cost
that dominates small CIFAR networks. A CUDA graph is recorded for fixed tensor shapes, so
:class:`StaticBatchForward` sends only batches of one size (the first it sees: the training
batch, or the half batch of a method that splits it) through the compiled forward and runs
any other size (the last partial batch when ``training.drop_last`` is false) eagerly, with
the same weights, instead of recording another graph. On a CPU the forward is compiled in
the default mode for every batch, as before.
"""
from __future__ import annotations

import torch
from torch import nn


class StaticBatchForward:
    """Calls ``compiled`` for batches of the first batch size seen, ``eager`` otherwise."""

    def __init__(self, compiled, eager: nn.Module):
        self.compiled, self.eager = compiled, eager
        self.batch_size: int | None = None

    def __call__(self, x: torch.Tensor, *args, **kwargs):
        if self.batch_size is None:
            self.batch_size = x.shape[0]
        forward = self.compiled if x.shape[0] == self.batch_size else self.eager
        return forward(x, *args, **kwargs)


def uses_cuda_graphs(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def compile_forward(net: nn.Module, device: torch.device | str):
    """``net`` compiled for training on ``device`` (see the module's docstring)."""
    if not uses_cuda_graphs(device):
        return torch.compile(net)
    return StaticBatchForward(torch.compile(net, mode="reduce-overhead"), net)


def begin_step(device: torch.device | str) -> None:
    """Tell CUDA graph trees that a new training step starts: the previous step's graph
    outputs may be overwritten (call once per step, before its first forward)."""
    if uses_cuda_graphs(device):
        torch.compiler.cudagraph_mark_step_begin()
