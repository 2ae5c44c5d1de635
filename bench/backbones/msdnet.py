"""MSDNet (Huang et al., ICLR 2018), layer for layer as in the BoostNet reference code.

The reference is ``models/msdnet_ge.py`` of SHI-Labs/Boosted-Dynamic-Networks, itself
MSDNet-PyTorch plus IMTA's gradient equilibrium. Same modules, same channel arithmetic,
same parameter shapes in the same order; only the code is our own.

Shapes. The network keeps ``n_scales = len(gr_factor)`` feature maps, finest first; scale s
has ``c * gr_factor[s]`` channels where ``c`` is the running base width, and half the
resolution of scale s-1. A layer adds ``growth_rate * gr_factor[s]`` channels to every scale
it outputs (dense connectivity, by concatenation):

    x'_s = cat[x_s, down(x_{s-1}), normal(x_s)]   (each conv half the new channels)
    x'_s = cat[x_s, normal(x_s)]                   (finest scale kept: no finer input)

``prune`` drops the finest scale as depth grows ('max': evenly over all layers, with a
1x1 transition that multiplies widths by ``reduction`` after each drop; 'min': only in the
last layers, transitions at 1/3 and 2/3 of depth). Block n is ``steps[n]`` such layers
(block 1 also holds the stem); head n reads block n's coarsest scale.

Initialisation: the reference's ``_init_weights`` only looks at the direct children of each
block and head, none of which is a Conv2d, BatchNorm2d or Linear, so it changes nothing;
the reference trains from PyTorch's default initialisation, and so does this module.
"""
from __future__ import annotations

import inspect
import math
from typing import Sequence

import torch
from torch import nn

from bench.backbones.common import ExitState, check_advance, check_num_exits, rescale_grad
from bench.backbones.layout import BatchNorm2d, channels_last_input
from bench.backbones.registry import register


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
                 padding: int = 1) -> nn.Sequential:
    """The reference's ConvBasic: conv (no bias) -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def dense_conv(c_in: int, c_out: int, stride: int, bottleneck: bool,
               bn_width: int) -> nn.Sequential:
    """The reference's ConvBN: [1x1 bottleneck to min(c_in, bn_width * c_out)] -> 3x3 conv,
    each followed by BN and ReLU; stride 2 for a 'down' conv, 1 for a 'normal' one."""
    layers: list[nn.Module] = []
    c_inner = c_in
    if bottleneck:
        c_inner = min(c_in, bn_width * c_out)
        layers += [nn.Conv2d(c_in, c_inner, 1, bias=False), BatchNorm2d(c_inner),
                   nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(c_inner, c_out, 3, stride=stride, padding=1, bias=False),
               BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ScaleUnit(nn.Module):
    """One output scale of an MSDNet layer (the reference's ConvNormal / ConvDownNormal).

    Without ``down``: cat[same, normal(same)]. With it: cat[same, down(finer), normal(same)],
    each conv producing half of the ``c_new`` new channels.
    """

    def __init__(self, c_finer: int | None, c_same: int, c_new: int, bottleneck: bool,
                 bn_finer: int | None, bn_same: int):
        super().__init__()
        if c_finer is None:
            self.down = None
            self.normal = dense_conv(c_same, c_new, 1, bottleneck, bn_same)
        else:
            self.down = dense_conv(c_finer, c_new // 2, 2, bottleneck, bn_finer)
            self.normal = dense_conv(c_same, c_new // 2, 1, bottleneck, bn_same)

    def forward(self, finer: torch.Tensor | None, same: torch.Tensor) -> torch.Tensor:
        if self.down is None:
            return torch.cat([same, self.normal(same)], dim=1)
        return torch.cat([same, self.down(finer), self.normal(same)], dim=1)


class MSDLayer(nn.Module):
    """The reference's MSDNLayer: ``in_scales`` maps in, the coarsest ``out_scales`` out.

    Input list index j holds absolute scale ``n_scales - in_scales + j``.
    """

    def __init__(self, c: int, growth_rate: int, gr_factor: Sequence[int],
                 bn_factor: Sequence[int], bottleneck: bool, in_scales: int, out_scales: int):
        super().__init__()
        n_scales = len(gr_factor)
        self.discard = in_scales - out_scales  # 0 or 1: the finest input is dropped
        offset = n_scales - out_scales          # absolute index of the finest output scale
        units = []
        for s in range(offset, n_scales):
            has_finer = s > offset or self.discard > 0
            units.append(ScaleUnit(
                c * gr_factor[s - 1] if has_finer else None, c * gr_factor[s],
                growth_rate * gr_factor[s], bottleneck,
                bn_factor[s - 1] if has_finer else None, bn_factor[s]))
        self.units = nn.ModuleList(units)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        d = self.discard
        out = []
        for j, unit in enumerate(self.units):
            finer = xs[j + d - 1] if (j > 0 or d > 0) else None
            out.append(unit(finer, xs[j + d]))
        return out


class Stem(nn.Module):
    """The reference's MSDNFirstLayer: one map per scale from the image.

    CIFAR: 3x3 conv at full resolution. ImageNet: 7x7/2 conv (with bias, as in the
    reference) -> BN -> ReLU -> 3x3/2 max pool. Each further scale: 3x3/2 ConvBasic.
    """

    def __init__(self, c: int, gr_factor: Sequence[int], dataset: str, in_channels: int = 3):
        super().__init__()
        c0 = c * gr_factor[0]
        if dataset == "cifar":
            first = conv_bn_relu(in_channels, c0)
        else:
            first = nn.Sequential(nn.Conv2d(in_channels, c0, 7, stride=2, padding=3),
                                  BatchNorm2d(c0), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        layers = [first]
        for s in range(1, len(gr_factor)):
            layers.append(conv_bn_relu(c * gr_factor[s - 1], c * gr_factor[s], stride=2))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out


class Transition(nn.Module):
    """The reference's transition (a ParallelModule): 1x1 ConvBasic on each kept scale."""

    def __init__(self, c_in: int, c_out: int, gr_factor: Sequence[int], out_scales: int):
        super().__init__()
        offset = len(gr_factor) - out_scales
        self.convs = nn.ModuleList(
            conv_bn_relu(c_in * gr_factor[s], c_out * gr_factor[s], kernel=1, padding=0)
            for s in range(offset, len(gr_factor)))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(x) for conv, x in zip(self.convs, xs)]


def head(c_in: int, num_classes: int, dataset: str, head_channels: int | None) -> nn.Sequential:
    """Exit classifier on the coarsest scale: two 3x3/2 ConvBasic, 2x2 average pool, linear.

    The reference uses 128 inner channels on CIFAR and ``c_in`` on ImageNet; both expect a
    4x4 (CIFAR) or 7x7 (ImageNet) map, which the pool turns into 1x1.
    """
    c_mid = head_channels or (128 if dataset == "cifar" else c_in)
    return nn.Sequential(
        conv_bn_relu(c_in, c_mid, stride=2),
        conv_bn_relu(c_mid, c_mid, stride=2),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(c_mid, num_classes),
    )


def block_steps(n_blocks: int, step_mode: str, step: int, base: int) -> list[int]:
    """Layers per block: ``base`` then ``step`` each ('even') or ``step * i + 1`` ('lin_grow')."""
    return [base] + [step if step_mode == "even" else step * i + 1 for i in range(1, n_blocks)]


def layer_scales(n_scales: int, prune: str, n_layers: int, layer: int) -> tuple[int, int]:
    """(in_scales, out_scales) of layer ``layer`` (1-based) among ``n_layers``, as the reference."""
    if prune == "min":
        return (min(n_scales, n_layers - layer + 2), min(n_scales, n_layers - layer + 1))
    interval = math.ceil(n_layers / n_scales)
    return (n_scales - max(0, layer - 2) // interval, n_scales - (layer - 1) // interval)


def _choice(name: str, value, allowed: Sequence) -> None:
    if value not in allowed:
        raise ValueError(f"msdnet: {name} must be one of {list(allowed)}, got {value!r}")


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"msdnet: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _factors(name: str, value) -> list[int]:
    """A list of positive ints, also accepted in the reference's '1-2-4' string form."""
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.split("-")]
        except ValueError:
            value = None
    if (not isinstance(value, (list, tuple)) or not value
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
        raise ValueError(f"msdnet: {name} must be a non-empty list of positive integers "
                         f"(or a string like '1-2-4'), got {value!r}")
    return list(value)


class MSDNet(nn.Module):
    """Multi-scale dense network with ``n_blocks`` exits; arguments as the reference's
    (``nBlocks``, ``stepmode``, ``step``, ``base``, ``nChannels``, ``growthRate``,
    ``grFactor``, ``bnFactor``, ``bottleneck``, ``prune``, ``reduction``; ``dataset`` picks
    the stem and the heads). ``head_channels`` (not in the reference) overrides the CIFAR
    heads' 128 inner channels, for small test models.
    """

    def __init__(self, num_classes: int = 100, *, n_blocks: int = 10, step_mode: str = "even",
                 step: int = 2, base: int = 4, channels: int = 16, growth_rate: int = 6,
                 gr_factor: Sequence[int] | str = (1, 2, 4),
                 bn_factor: Sequence[int] | str = (1, 2, 4), bottleneck: bool = True,
                 prune: str = "max", reduction: float = 0.5, dataset: str = "cifar",
                 image_size: int | None = None, in_channels: int = 3,
                 head_channels: int | None = None):
        super().__init__()
        _positive_int("num_classes", num_classes)
        _positive_int("n_blocks", n_blocks)
        _choice("step_mode", step_mode, ("even", "lin_grow"))
        _positive_int("step", step)
        _positive_int("base", base)
        _positive_int("channels", channels)
        _positive_int("growth_rate", growth_rate)
        gr_factor, bn_factor = _factors("gr_factor", gr_factor), _factors("bn_factor", bn_factor)
        if len(bn_factor) != len(gr_factor):
            raise ValueError(f"msdnet: bn_factor must have one entry per scale like gr_factor "
                             f"({len(gr_factor)}), got {bn_factor!r}")
        odd = [s for s in range(1, len(gr_factor)) if growth_rate * gr_factor[s] % 2]
        if odd:
            raise ValueError(f"msdnet: growth_rate * gr_factor[s] must be even for scales s >= 1 "
                             f"(two convs share the new channels), got growth_rate={growth_rate}, "
                             f"gr_factor={gr_factor}")
        _choice("bottleneck", bottleneck, (True, False))
        _choice("prune", prune, ("min", "max"))
        if isinstance(reduction, bool) or not isinstance(reduction, (int, float)) \
                or not 0 <= reduction <= 1:
            raise ValueError(f"msdnet: reduction must be a number in [0, 1], got {reduction!r}")
        _choice("dataset", dataset, ("cifar", "imagenet"))
        if head_channels is not None:
            _positive_int("head_channels", head_channels)
        image_size = image_size or (32 if dataset == "cifar" else 224)
        _positive_int("image_size", image_size)
        _positive_int("in_channels", in_channels)

        n_scales = len(gr_factor)
        # The heads halve the coarsest map twice (3x3/2 convs, so ceil) and then average-pool
        # 2x2; the linear layer needs that to end at 1x1, as in the reference.
        side = image_size if dataset == "cifar" else -(-image_size // 4)  # 7x7/2 conv, 3x3/2 pool
        for _ in range(n_scales - 1 + 2):
            side = -(-side // 2)
        if side // 2 != 1:
            raise ValueError(f"msdnet: image_size {image_size} gives a {side}x{side} map before "
                             f"the heads' 2x2 pool, which must end at 1x1 (CIFAR: 32 with 3 "
                             f"scales, ImageNet: 224 with 4)")
        self.num_exits = n_blocks
        self.input_size = (in_channels, image_size, image_size)
        # the resolved architecture (what bench.speed_reference builds the reference from)
        self.config = dict(num_classes=num_classes, n_blocks=n_blocks, step_mode=step_mode,
                           step=step, base=base, channels=channels, growth_rate=growth_rate,
                           gr_factor=list(gr_factor), bn_factor=list(bn_factor),
                           bottleneck=bottleneck, prune=prune, reduction=reduction,
                           dataset=dataset, image_size=image_size, in_channels=in_channels,
                           head_channels=head_channels)
        self.grad_rescale = False
        self.steps = block_steps(n_blocks, step_mode, step, base)
        n_layers = sum(self.steps)

        self.blocks = nn.ModuleList()
        self.heads = nn.ModuleList()
        c, layer = channels, 0
        for n_steps in self.steps:
            mods: list[nn.Module] = [Stem(c, gr_factor, dataset, in_channels)] if layer == 0 else []
            for _ in range(n_steps):
                layer += 1
                in_s, out_s = layer_scales(n_scales, prune, n_layers, layer)
                mods.append(MSDLayer(c, growth_rate, gr_factor, bn_factor, bottleneck, in_s, out_s))
                c += growth_rate
                if reduction > 0 and (
                        (prune == "max" and in_s > out_s)
                        or (prune == "min" and layer in (n_layers // 3, 2 * n_layers // 3))):
                    c_new = math.floor(reduction * c)
                    mods.append(Transition(c, c_new, gr_factor, out_s))
                    c = c_new
            self.blocks.append(nn.Sequential(*mods))
            self.heads.append(head(c * gr_factor[-1], num_classes, dataset, head_channels))

    def forward(self, x: torch.Tensor, num_exits: int | None = None) -> list[torch.Tensor]:
        k = check_num_exits(num_exits, self.num_exits)
        logits, xs = [], channels_last_input(x)
        for i in range(k):
            f, xs = self._exit(i, xs, more=i + 1 < k)
            logits.append(f)
        return logits

    def begin(self, x: torch.Tensor) -> ExitState:
        """Exit-by-exit run (:class:`~bench.backbones.common.ExitState`): the image."""
        return ExitState(0, channels_last_input(x))

    def advance(self, state: ExitState) -> tuple[torch.Tensor, ExitState]:
        """Block k and head k for the samples in ``state``: (f_k, state after exit k)."""
        i = check_advance(self, state)
        f, xs = self._exit(i, state.tensors, more=i + 1 < self.num_exits)
        return f, ExitState(i + 1, xs)

    def _exit(self, i: int, xs, more: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Block i and head i (0-based): (logits, the maps block i+1 reads). ``more``: a
        later block runs in this pass (so the carried map gets its gradient rescale)."""
        xs = self.blocks[i](xs)
        coarse = xs[-1]
        if not self.grad_rescale:
            return self.heads[i](coarse), xs
        # IMTA's gradient equilibrium, where msdnet_ge puts it: on the coarsest scale only,
        # 1/(N-i) of head i's gradient and (N-i-1)/(N-i) of the later blocks' gradient
        # reach block i (i 0-based).
        n = self.num_exits
        logits = self.heads[i](rescale_grad(coarse, 1.0 / (n - i)))
        if more:
            xs = xs[:-1] + [rescale_grad(coarse, (n - i - 1) / (n - i))]
        return logits, xs


_ARGS = tuple(inspect.signature(MSDNet.__init__).parameters)[2:]  # after self, num_classes


def _msdnet(num_classes: int, defaults: dict, overrides: dict) -> MSDNet:
    unknown = sorted(set(overrides) - set(_ARGS))
    if unknown:
        raise TypeError(f"msdnet: unknown argument(s) {unknown}; expected some of {list(_ARGS)}")
    return MSDNet(num_classes, **{**defaults, **overrides})


_CIFAR = dict(step_mode="even", step=2, base=4, channels=16, growth_rate=6,
              gr_factor=(1, 2, 4), bn_factor=(1, 2, 4), dataset="cifar")
_IMAGENET = dict(n_blocks=5, step_mode="even", channels=32, growth_rate=16,
                 gr_factor=(1, 2, 4, 4), bn_factor=(1, 2, 4, 4), dataset="imagenet")


@register("msdnet10_cifar")
def msdnet10_cifar(num_classes: int = 100, **overrides) -> MSDNet:
    """BoostNet's CIFAR-100 anytime backbone: 10 blocks, even, step 2, base 4."""
    return _msdnet(num_classes, {**_CIFAR, "n_blocks": 10}, overrides)


@register("msdnet7_cifar")
def msdnet7_cifar(num_classes: int = 100, **overrides) -> MSDNet:
    """MSDNet-PyTorch's CIFAR anytime backbone: 7 blocks, even, step 2, base 4."""
    return _msdnet(num_classes, {**_CIFAR, "n_blocks": 7}, overrides)


@register("msdnet6_cifar")
def msdnet6_cifar(num_classes: int = 100, **overrides) -> MSDNet:
    """BoostNet's CIFAR-100 budgeted backbone: 6 blocks, even, step 2, base 4."""
    return _msdnet(num_classes, {**_CIFAR, "n_blocks": 6}, overrides)


@register("msdnet5_lingrow_cifar")
def msdnet5_lingrow_cifar(num_classes: int = 100, **overrides) -> MSDNet:
    """MSDNet-PyTorch's CIFAR budgeted backbone: 5 blocks, lin_grow, step 1, base 1."""
    return _msdnet(num_classes, {**_CIFAR, "n_blocks": 5, "step_mode": "lin_grow", "step": 1,
                                 "base": 1}, overrides)


@register("msdnet_step4_imagenet")
def msdnet_step4_imagenet(num_classes: int = 1000, **overrides) -> MSDNet:
    """ImageNet MSDNet, 5 blocks, step = base = 4."""
    return _msdnet(num_classes, {**_IMAGENET, "step": 4, "base": 4}, overrides)


@register("msdnet_step5_imagenet")
def msdnet_step5_imagenet(num_classes: int = 1000, **overrides) -> MSDNet:
    """ImageNet MSDNet, 5 blocks, step = base = 5 (BoostNet's budgeted setting)."""
    return _msdnet(num_classes, {**_IMAGENET, "step": 5, "base": 5}, overrides)


@register("msdnet_step7_imagenet")
def msdnet_step7_imagenet(num_classes: int = 1000, **overrides) -> MSDNet:
    """ImageNet MSDNet, 5 blocks, step = base = 7 (BoostNet's anytime setting)."""
    return _msdnet(num_classes, {**_IMAGENET, "step": 7, "base": 7}, overrides)


@register("msdnet_tiny")
def msdnet_tiny(num_classes: int = 10, **overrides) -> MSDNet:
    """A small CIFAR-style MSDNet for tests and the quickstart: 3 exits, 5.3 MMACs, 0.11 M params."""
    return _msdnet(num_classes, dict(n_blocks=3, step_mode="even", step=1, base=2, channels=8,
                                     growth_rate=4, gr_factor=(1, 2, 4), bn_factor=(1, 2, 4),
                                     dataset="cifar", head_channels=32), overrides)
