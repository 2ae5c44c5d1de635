"""A small chain-shaped multi-exit net for tests: block n feeds head n and block n+1.

Its gradient rescaling follows MSDNet's gradient equilibrium, so the rescaling math can be
checked on a net whose dependency structure is a plain chain.
"""
from __future__ import annotations

import torch
from torch import nn

from bench.backbones.common import ExitState, check_advance, check_num_exits, rescale_grad
from bench.backbones.registry import register


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ChainNet(nn.Module):
    """``blocks[n]`` -> ``heads[n]`` (global average pool + linear) for n = 1..N."""

    def __init__(self, num_classes: int, channels: list[int], in_channels: int = 3,
                 image_size: int = 32):
        super().__init__()
        strides = [1] + [2] * (len(channels) - 1)
        c_ins = [in_channels] + channels[:-1]
        self.blocks = nn.ModuleList(
            _conv_bn_relu(c_in, c_out, s) for c_in, c_out, s in zip(c_ins, channels, strides))
        self.heads = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
            for c in channels)
        self.num_exits = len(channels)
        self.input_size = (in_channels, image_size, image_size)
        self.grad_rescale = False

    def forward(self, x: torch.Tensor, num_exits: int | None = None) -> list[torch.Tensor]:
        k = check_num_exits(num_exits, self.num_exits)
        logits = []
        for i in range(k):
            f, x = self._exit(i, x)
            logits.append(f)
        return logits

    def begin(self, x: torch.Tensor) -> ExitState:
        """Exit-by-exit run (:class:`~bench.backbones.common.ExitState`): the image."""
        return ExitState(0, x)

    def advance(self, state: ExitState) -> tuple[torch.Tensor, ExitState]:
        """Block k and head k for the samples in ``state``: (f_k, state after exit k)."""
        i = check_advance(self, state)
        f, x = self._exit(i, state.tensors)
        return f, ExitState(i + 1, x)

    def _exit(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.blocks[i](x)
        if not self.grad_rescale:
            return self.heads[i](x), x
        # Same placement as MSDNet's gradient equilibrium: 1/(N-i) into head i,
        # (N-i-1)/(N-i) into the rest of the network (i is 0-based).
        n = self.num_exits
        return (self.heads[i](rescale_grad(x, 1.0 / (n - i))),
                rescale_grad(x, (n - i - 1) / (n - i)))


@register("chain_tiny")
def chain_tiny(num_classes: int = 10, channels=(8, 16, 32), in_channels: int = 3,
               image_size: int = 32) -> ChainNet:
    """Three conv blocks with one exit each; about 1 MMAC at 32x32."""
    return ChainNet(num_classes, list(channels), in_channels=in_channels, image_size=image_size)
