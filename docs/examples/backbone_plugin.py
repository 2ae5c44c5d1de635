"""A worked example of a new multi-exit backbone, plugged in without editing the harness.

``example_cnn``: three stages of two 3x3 convolutions (the second and third halve the
resolution), an exit after each stage (global average pooling and a linear layer).

What the harness needs from a backbone:
- ``num_exits`` and ``input_size`` (C, H, W) attributes;
- ``forward(x, num_exits=None)`` returning the raw logits of exits 1..k (all by default),
  computing nothing past exit k (early-exit cost is counted by running exactly that);
- each exit's logits produced by an ``nn.Linear`` (methods with heads of their own take
  that layer over; bench.backbones' per-exit parameter groups come from running the model);
- optionally a ``grad_rescale`` attribute, for BoostNet's gradient rescaling (paper Eq. 7;
  without the attribute, methods that ask for it fail with a clear error).

Used by docs/examples/add-a-backbone.yaml; docs/extending.md, "Add a backbone", walks
through it.
"""
from __future__ import annotations

import torch
from torch import nn

from bench import backbones
from bench.backbones.common import check_num_exits, rescale_grad


def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    layers = []
    for i in range(2):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, stride=stride if i == 0 else 1,
                             padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ExampleCNN(nn.Module):
    def __init__(self, num_classes: int, width: int, in_channels: int, image_size: int):
        super().__init__()
        widths = [width, 2 * width, 4 * width]
        c_ins = [in_channels] + widths[:-1]
        self.stages = nn.ModuleList(_stage(c_in, c, 1 if i == 0 else 2)
                                    for i, (c_in, c) in enumerate(zip(c_ins, widths)))
        self.exits = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
            for c in widths)
        self.num_exits = len(widths)
        self.input_size = (in_channels, image_size, image_size)
        self.grad_rescale = False  # set by the method (BoostNet: on)

    def forward(self, x: torch.Tensor, num_exits: int | None = None) -> list[torch.Tensor]:
        k = check_num_exits(num_exits, self.num_exits)
        n_total, logits = self.num_exits, []
        for i in range(k):  # (B, C_i, H_i, W_i) after stage i
            x = self.stages[i](x)
            if self.grad_rescale:
                # Gradient rescaling (paper Eq. 7): stage i feeds exit i and the N-i-1
                # later exits; scaling the gradient into exit i by 1/(N-i) and into the
                # rest by (N-i-1)/(N-i) makes every stage's gradient the mean, not the sum,
                # of the losses that depend on it.
                logits.append(self.exits[i](rescale_grad(x, 1.0 / (n_total - i))))
                x = rescale_grad(x, (n_total - i - 1) / (n_total - i))
            else:
                logits.append(self.exits[i](x))
        return logits


@backbones.register("example_cnn")
def example_cnn(num_classes: int = 10, width: int = 16, in_channels: int = 3,
                image_size: int = 32) -> ExampleCNN:
    """Three stages of width, 2x and 4x width channels; a suite's overrides set these."""
    return ExampleCNN(num_classes, width, in_channels, image_size)
