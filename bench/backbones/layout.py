"""CPU memory layout of the backbones: channels_last, with exact batch statistics.

On CPU, oneDNN's convolutions run much faster on channels_last (NHWC) tensors than on NCHW
ones for the narrow layers of these networks (msdnet10_cifar, batch 64, one thread: 794
instead of 1227 ms of convolution forward + backward per training step). So a backbone
hands its input to the first layer as channels_last (:func:`channels_last_input`), and
every later map inherits the layout (convolutions, pooling, ``torch.cat`` and elementwise
ops keep it).

PyTorch's own channels_last batch norm is not good enough for training, though: it sums the
batch statistics and the weight and bias gradients row after row in float32, 10-40x less
accurately than its NCHW kernel (which accumulates in double): for a [64, 6, 32, 32] input
its gradients are 4e-6 away from float64, the NCHW kernel's 1e-7. :class:`BatchNorm2d`
computes training-mode batch norm of a channels_last tensor with the NCHW kernel's formulas
and sums as exact as its double accumulators: by the fused C kernel of
:mod:`bench.backbones.native` (float32, double accumulators, 3 passes forward and 2 backward)
where a C compiler is there, else with PyTorch ops on the tensor's pixel rows with pairwise
(cascade) sums (5-7 passes each way, and float64). :class:`Sequential` hands the ReLU that
follows a batch norm to it, and the kernel fuses that in too. In eval mode batch norm is
elementwise (running statistics) and PyTorch's kernel is used as is. Values differ from an
all-NCHW run only by float rounding; :func:`plain_layout` switches the layout off, for
comparisons (tests/backbones/test_layout.py).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from bench.backbones import native

_ENABLED = [True]


@contextlib.contextmanager
def plain_layout():
    """Within this block backbones keep every tensor NCHW (the reference code's layout)."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


def _cpu_channels_last(x: torch.Tensor) -> bool:
    # Never while torch.jit traces: fvcore's FLOP count must see the plain ops only.
    return (_ENABLED[-1] and x.dim() == 4 and x.device.type == "cpu"
            and not torch.jit.is_tracing())


def channels_last_input(x: torch.Tensor) -> torch.Tensor:
    """A backbone's input in the CPU layout (channels_last on CPU, unchanged elsewhere)."""
    if _cpu_channels_last(x):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """The rows of a channels_last [N, C, H, W] tensor, k pixels per row: [N*H*W/k, k*C]
    (a view when ``x`` is channels_last-contiguous, else a copy). Column j holds channel
    j % C; with k*C wide rows elementwise kernels vectorise even when C is small."""
    return x.permute(0, 2, 3, 1).reshape(-1, k * x.shape[1])


def _pixels_per_row(x: torch.Tensor) -> int:
    """The largest power of two k <= 128 / C that divides N*H*W."""
    m, k = x.numel() // x.shape[1], 1
    while 2 * k * x.shape[1] <= 128 and m % (2 * k) == 0:
        k *= 2
    return k


def _per_channel(v: torch.Tensor, k: int) -> torch.Tensor:
    """Sum the k column groups of a [k*C] vector into [C]."""
    return v if k == 1 else v.view(k, -1).sum(0)


def _per_column(v: torch.Tensor, k: int) -> torch.Tensor:
    """A [C] vector repeated for the k column groups: [k*C]."""
    return v if k == 1 else v.repeat(k)


class _TrainBatchNormRows(torch.autograd.Function):
    """Training-mode batch norm over the pixels of a channels_last tensor.

    With m pixels, mean = sum(x)/m, var = sum((x - mean)^2)/m (biased, as used to normalise),
    s = w / sqrt(var + eps), y = x * s + (b - mean * s). Backward, with
    xhat = (x - mean) / sqrt(var + eps): db = sum(g), dw = sum(g * xhat),
    dx = (g - db/m - (x - mean) * dw / (m sqrt(var + eps))) * s. The evaluation order is the
    NCHW kernel's, and ``torch.sum`` reduces pairwise, so the sums are as accurate as that
    kernel's double accumulators.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        k = _pixels_per_row(x)
        rows = _rows(x, k)
        m = rows.shape[0] * k
        mean = _per_channel(rows.sum(0), k).div_(m)
        centred = rows - _per_column(mean, k)
        y = torch.empty_like(x, memory_format=torch.channels_last)
        y_rows = _rows(y, k)
        var = _per_channel(torch.mul(centred, centred, out=y_rows).sum(0), k).div_(m)
        invstd = var.add(eps).rsqrt_()
        scale = weight * invstd
        # y = x * scale + (b - mean * scale), the NCHW kernel's form
        torch.addcmul(_per_column(bias - mean * scale, k), rows, _per_column(scale, k),
                      out=y_rows)
        ctx.save_for_backward(centred, invstd, scale, x, weight, bias)
        ctx.k, ctx.eps = k, eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        centred, invstd, scale, x, weight, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the gradient itself must be differentiable
            return _differentiable_backward(grad, x, weight, bias, ctx.eps)
        k = ctx.k
        g = _rows(grad, k)
        m = g.shape[0] * k
        dx = torch.empty_like(grad, memory_format=torch.channels_last)
        dx_rows = _rows(dx, k)
        grad_bias = _per_channel(g.sum(0), k)
        grad_weight = _per_channel(torch.mul(g, centred, out=dx_rows).sum(0), k).mul_(invstd)
        # dx = (g - db / m - centred * invstd * dw / m) * scale, as PyTorch's NCHW kernel
        torch.sub(g, _per_column(grad_bias / m, k), out=dx_rows)
        dx_rows.addcmul_(centred, _per_column(invstd * grad_weight / m, k), value=-1)
        dx_rows.mul_(_per_column(scale, k))
        return dx, grad_weight, grad_bias, None


class _TrainBatchNormNative(torch.autograd.Function):
    """The same batch norm by the fused C kernel (:mod:`bench.backbones.native`): float32,
    double accumulators, the NCHW kernel's formulas; 3 passes forward and 2 backward. With
    ``relu`` the ReLU after it is fused in too (its mask recomputed in the backward)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, relu):
        y, mean, invstd, var = native.forward(x, weight, bias, eps, relu)
        ctx.save_for_backward(x, mean, invstd, weight, bias)
        ctx.eps, ctx.relu = eps, relu
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        x, mean, invstd, weight, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph
            return (*_differentiable_backward(grad, x, weight, bias, ctx.eps, ctx.relu), None)
        dx, grad_weight, grad_bias = native.backward(grad, x, mean, invstd, weight, bias,
                                                     ctx.relu)
        return dx, grad_weight, grad_bias, None, None


def _differentiable_backward(grad, x, weight, bias, eps, relu=False):
    """The same gradients with a graph, for second-order methods (L2W's lookahead takes
    the gradient of a gradient): batch norm (and ReLU) recomputed by PyTorch's own (twice
    differentiable) kernels, its gradients taken with create_graph."""
    inputs = [t for t in (x, weight, bias) if t.requires_grad]
    with torch.enable_grad():
        y = nn.functional.batch_norm(x, None, None, weight, bias, True, 0.0, eps)
        if relu:
            y = nn.functional.relu(y)
        grads = iter(torch.autograd.grad(y, inputs, grad, create_graph=True))
    return (*(next(grads) if t.requires_grad else None for t in (x, weight, bias)), None)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same arguments, parameters, buffers and state-dict keys) whose
    training-mode forward on a channels_last float CPU tensor uses exact sums (module doc).
    Every other case is ``nn.BatchNorm2d``'s own forward. ``relu=True`` (as
    :class:`Sequential` calls it) returns the ReLU of the result, fused into the C kernel
    where that runs."""

    def forward(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        if not (self.training and self.affine and self.track_running_stats
                and _cpu_channels_last(x) and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)
                and x.dtype in (torch.float32, torch.float64)
                and self.weight.dtype == x.dtype and x.numel() > x.shape[1]):
            y = super().forward(x)
        elif native.usable(x):  # the ReLU fused in
            return self._exact(_TrainBatchNormNative, x, relu)
        else:
            y = self._exact(_TrainBatchNormRows, x)
        return nn.functional.relu(y, inplace=True) if relu else y

    def _exact(self, function, x: torch.Tensor, *extra) -> torch.Tensor:
        """Training-mode batch norm of ``x`` by the autograd ``function`` (``extra``: its
        arguments after eps), and the running statistics updated as nn.BatchNorm2d does."""
        factor = self.momentum
        self.num_batches_tracked.add_(1)
        if factor is None:  # cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked)
        y, mean, var = function.apply(x, self.weight, self.bias, self.eps, *extra)
        m = x.numel() // x.shape[1]
        with torch.no_grad():  # r <- (1 - factor) r + factor * batch value (unbiased var)
            self.running_mean.lerp_(mean, factor)
            self.running_var.lerp_(var.mul_(m / (m - 1)), factor)
        return y


class Sequential(nn.Sequential):
    """``nn.Sequential`` (same children, indices and state-dict keys) that hands a ReLU right
    after a :class:`BatchNorm2d` to the batch norm (``bn(x, relu=True)``), which fuses it
    into its kernel; the ReLU module itself is then not called, unless it has hooks (which
    then see its input and output as usual)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            if (isinstance(layers[i], BatchNorm2d) and i + 1 < len(layers)
                    and _plain_relu(layers[i + 1])):
                x = layers[i](x, relu=True)
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x


def _plain_relu(module: nn.Module) -> bool:
    """An ``nn.ReLU`` that nobody watches: no forward hooks or pre-hooks of its own."""
    return (type(module) is nn.ReLU and not module._forward_hooks
            and not module._forward_pre_hooks)
