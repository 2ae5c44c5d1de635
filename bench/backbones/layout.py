"""CPU memory layout of the MSDNets: channels_last feature maps, stock PyTorch ops.

On a CPU, oneDNN's convolutions run much faster on channels_last (NHWC) tensors than on
NCHW ones for the narrow layers of these networks (6 to 48 new channels per convolution).
So a backbone hands its input to the first layer as channels_last
(:func:`channels_last_input`), and every later map inherits the layout: convolutions, batch
norm, pooling, ``torch.cat`` and elementwise ops keep it. Measured: docs/benchmarks.md.

Only float32 and bfloat16 CPU inputs are converted (oneDNN's path); float64 (the fidelity
test) and GPU inputs keep their layout. The values equal an all-NCHW run's up to float
rounding: PyTorch's channels_last batch norm sums in float32 where its NCHW kernel sums in
double, a relative ~1e-6 in the batch statistics, far below the noise of SGD and of
float32 training itself. :func:`plain_layout` switches the layout off, for comparisons
(``bench speed --plain``, tests/backbones/test_layout.py).
"""
from __future__ import annotations

import contextlib

import torch

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
