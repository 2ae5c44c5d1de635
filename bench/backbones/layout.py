"""CPU memory layout of the MSDNets: channels_last convolutions, stock PyTorch ops.

On a CPU, oneDNN's convolutions run much faster on channels_last (NHWC) tensors than on
NCHW ones for the narrow layers of these networks (6 to 48 new channels per convolution).
So a backbone hands its input to the first layer as channels_last
(:func:`channels_last_input`), and every later map inherits the layout: convolutions,
pooling, ``torch.cat`` and elementwise ops keep it. Batch norm is the exception
(:class:`BatchNorm2d`): PyTorch's channels_last CPU batch norm is slower than its NCHW
kernel and sums in float32 where the NCHW kernel sums in double, so the map is copied to
NCHW for the batch norm and back; the two copies cost less than the difference. Measured:
docs/benchmarks.md.

Only float32 and bfloat16 CPU inputs are converted (oneDNN's path); float64 (the fidelity
test) and GPU inputs keep their layout, and so do the batch norms' inputs then. The values
equal an all-NCHW run's up to float rounding. :func:`plain_layout` switches the layout
off, for comparisons (``bench speed --plain``, tests/backbones/test_layout.py).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

_ENABLED = [True]
ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


@contextlib.contextmanager
def plain_layout():
    """Within this block backbones keep every tensor NCHW (the reference code's layout)."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


def channels_last_input(x: torch.Tensor) -> torch.Tensor:
    """A backbone's input in the CPU layout: channels_last for a float32 or bfloat16 CPU
    image batch, unchanged otherwise (and never while torch.jit traces: fvcore's FLOP count
    must see the plain ops only)."""
    if (_ENABLED[-1] and x.dim() == 4 and x.device.type == "cpu"
            and x.dtype in ONEDNN_DTYPES and not torch.jit.is_tracing()):
        return x.contiguous(memory_format=torch.channels_last)
    return x


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict keys) that runs a
    channels_last CPU map through PyTorch's NCHW kernel and hands it back channels_last;
    any other input (NCHW, GPU, under a JIT trace) goes straight to ``nn.BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.dim() != 4 or torch.jit.is_tracing()
                or x.is_contiguous()
                or not x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
