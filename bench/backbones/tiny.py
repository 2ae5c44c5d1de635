"""A small chain-shaped multi-exit net for tests: block n feeds head n and block n+1.

Its gradient rescaling follows MSDNet's gradient equilibrium, so the rescaling math can be
checked on a net whose dependency structure is a plain chain.
"""
from __future__ import annotations

import torch
from torch import nn

from bench.backbones.common import check_num_exits, rescale_grad
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
        n_total = self.num_exits
        logits = []
        for i in range(k):
            x = self.blocks[i](x)
            if self.grad_rescale:
                # Same placement as MSDNet's gradient equilibrium: 1/(N-i) into head i,
                # (N-i-1)/(N-i) into the rest of the network (i is 0-based).
                into_head = rescale_grad(x, 1.0 / (n_total - i))
                logits.append(self.heads[i](into_head))
                x = rescale_grad(x, (n_total - i - 1) / (n_total - i))
            else:
                logits.append(self.heads[i](x))
        return logits


@register("chain_tiny")
def chain_tiny(num_classes: int = 10, channels=(8, 16, 32), in_channels: int = 3,
               image_size: int = 32) -> ChainNet:
    """Three conv blocks with one exit each; about 1 MMAC at 32x32."""
    return ChainNet(num_classes, list(channels), in_channels=in_channels, image_size=image_size)
