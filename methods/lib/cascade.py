"""Zero Time Waste (Wolczyk et al., NeurIPS 2021): cascade connections between exit heads.

Each exit's final linear layer also reads the previous exit's raw logits, detached
(gmum/Zero-Time-Waste:ztw_cv_original/aux_funcs.py:238-253, ResNet_SDN.py:179-191):

    f_1 = W_1 h_1 + b_1                                  W_1: [C, d_1]
    f_n = W_n [h_n ; norm(sg(f_{n-1}))] + b_n            W_n: [C, d_n + C]   (n >= 2)

h_n is the head's pooled feature (d_n values); norm is LayerNorm(C) (the reference's
ImageNet runs, ``--detach_norm layernorm``) or the identity (its CIFAR runs). The detach is
the reference's ``--detach_prev``, on in every run; it is not optional here. Since f_{n-1}
is detached, exit n's loss trains exit n's linear (and LayerNorm) only.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


class CascadeHead(nn.Module):
    """Exit n's final layer: ``forward(h_n, f_{n-1})`` -> f_n, [B, C].

    ``cascades`` is False for the first exit, which has no previous exit.
    """

    def __init__(self, feature_dim: int, num_classes: int, cascades: bool,
                 layer_norm: bool = False):
        super().__init__()
        self.cascades = bool(cascades)
        self.norm = nn.LayerNorm(num_classes) if cascades and layer_norm else nn.Identity()
        in_features = feature_dim + num_classes if cascades else feature_dim
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, h: Tensor, previous: Tensor | None = None) -> Tensor:
        if not self.cascades:
            if previous is not None:
                raise ValueError("the first exit's cascade head takes no previous exit's logits")
            return self.linear(h)  # [B, C]
        if previous is None:
            raise ValueError("a cascade head after the first exit needs f_{n-1}")
        carried = self.norm(previous.detach())  # [B, C], sg: no gradient into exit n-1
        return self.linear(torch.cat([h, carried], dim=1))  # [B, d_n + C] -> [B, C]


class CascadeLink(nn.Module):
    """The cascade's share of exit n's final layer, V_n norm(sg(f_{n-1})), V_n: [C, C], no
    bias. With the exit's own linear W_n h_n + b_n it is :class:`CascadeHead`'s
    W [h ; norm(sg(f))] + b for W = [W_n | V_n]: the same function and the same MACs, but
    the backbone's own final linear keeps its parameters and initialisation. V_n is drawn
    like the concatenated layer's columns: U(-1/sqrt(d_n + C), 1/sqrt(d_n + C))."""

    def __init__(self, feature_dim: int, num_classes: int, layer_norm: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(num_classes) if layer_norm else nn.Identity()
        self.linear = nn.Linear(num_classes, num_classes, bias=False)
        bound = 1.0 / math.sqrt(feature_dim + num_classes)
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound, generator=generator)

    def forward(self, previous: Tensor) -> Tensor:
        return self.linear(self.norm(previous.detach()))  # [B, C], sg: none into exit n-1


class CascadeClassifiers(nn.Module):
    """All exits' cascade heads; ``forward([h_1..h_N])`` -> [f_1..f_N], each [B, C]."""

    def __init__(self, feature_dims: Sequence[int], num_classes: int, layer_norm: bool = False):
        super().__init__()
        self.heads = nn.ModuleList(CascadeHead(d, num_classes, cascades=n > 0,
                                               layer_norm=layer_norm)
                                   for n, d in enumerate(feature_dims))

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != len(self.heads):
            raise ValueError(f"cascade has {len(self.heads)} exits, got {len(features)} features")
        logits: list[Tensor] = []
        for head, h in zip(self.heads, features):
            logits.append(head(h, logits[-1] if logits else None))
        return logits


def cascade_head_macs(feature_dims: Sequence[int], num_classes: int,
                      layer_norm: bool = False) -> list[int]:
    """MACs of each exit's cascade head for one image, as fvcore counts them.

    Exit 1: C d_1. Exit n >= 2: C (d_n + C), plus 5 C for LayerNorm (fvcore's estimate for a
    norm layer with an affine transform: 5 per element). cat and detach cost 0.
    """
    C = num_classes
    return [C * d if n == 0 else C * (d + C) + (5 * C if layer_norm else 0)
            for n, d in enumerate(feature_dims)]


def cascade_extra_macs(feature_dims: Sequence[int], num_classes: int,
                       layer_norm: bool = False) -> list[int]:
    """What the cascade adds over the plain final linear (C d_n): 0 for exit 1, then C^2
    (+ 5 C with LayerNorm); CIFAR-100: 10,000 MACs per exit."""
    heads = cascade_head_macs(feature_dims, num_classes, layer_norm)
    return [m - num_classes * d for m, d in zip(heads, feature_dims)]
