"""IMTA (Li et al., ICCV 2019): inline subnetwork collaboration and one-for-all distillation.

Inline subnetwork collaboration (ISC) replaces each head's final linear layer
(kalviny/IMTA:models/msdnet_imta.py:35-61). With h_n the head's pooled feature (c_n values):

    g_1 = W_1 h_1 + b_1                                   W_1: [C, c_1]
    u_n = ReLU(BN1d(A_n g_{n-1} + a_n))                   A_n: [c_n, C]     (n >= 2)
    g_n = W_n [h_n ; u_n] + b_n                           W_n: [C, 2 c_n]   (n >= 2)

Exit n predicts with g_n at training and test time. The reference detaches nothing, so exit
n's loss also trains exit n-1's linear and ISC module; ``isc_detach=True`` cuts that path.

One-for-all distillation (OFA, kalviny/IMTA:utils.py:16-36) is the loss of
:mod:`methods.lib.distill` with the teacher t = the frozen first-stage network's last-exit
logits, and KL reduced by 'mean' (divided by B*C) as the reference does.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from methods.lib.distill import distillation_loss


class ISCHead(nn.Module):
    """Exit n's new final layer: ``forward(h_n, g_{n-1})`` -> g_n, [B, C].

    ``collaborates`` is False for the first exit (no previous exit: g_1 = W_1 h_1 + b_1).
    """

    def __init__(self, feature_dim: int, num_classes: int, collaborates: bool,
                 isc_detach: bool = False):
        super().__init__()
        self.isc_detach = bool(isc_detach)
        self.collaboration = (nn.Sequential(nn.Linear(num_classes, feature_dim),
                                            nn.BatchNorm1d(feature_dim), nn.ReLU())
                              if collaborates else None)
        in_features = 2 * feature_dim if collaborates else feature_dim
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, h: Tensor, previous: Tensor | None = None) -> Tensor:
        if self.collaboration is None:
            if previous is not None:
                raise ValueError("the first exit's ISC head takes no previous exit's logits")
            return self.linear(h)  # [B, C]
        if previous is None:
            raise ValueError("an ISC head after the first exit needs g_{n-1}")
        u = self.collaboration(previous.detach() if self.isc_detach else previous)  # [B, c_n]
        return self.linear(torch.cat([h, u], dim=1))  # [B, 2 c_n] -> [B, C]


class InlineCollaboration(nn.Module):
    """All exits' ISC heads; ``forward([h_1..h_N])`` -> [g_1..g_N], each [B, C]."""

    def __init__(self, feature_dims: Sequence[int], num_classes: int, isc_detach: bool = False):
        super().__init__()
        self.heads = nn.ModuleList(ISCHead(c, num_classes, collaborates=n > 0,
                                           isc_detach=isc_detach)
                                   for n, c in enumerate(feature_dims))

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != len(self.heads):
            raise ValueError(f"ISC has {len(self.heads)} exits, got {len(features)} features")
        logits: list[Tensor] = []
        for head, h in zip(self.heads, features):
            logits.append(head(h, logits[-1] if logits else None))
        return logits


def isc_head_macs(feature_dims: Sequence[int], num_classes: int) -> list[int]:
    """MACs of each exit's ISC head for one image at inference, as fvcore counts them.

    Exit 1: C c_1 (W_1). Exit n >= 2: C c_n (A_n) + 2 c_n (BatchNorm1d in eval mode: fvcore
    counts 2 per element with an affine transform) + 2 c_n C (W_n). ReLU and cat cost 0.
    """
    return [num_classes * c if n == 0 else num_classes * c + 2 * c + 2 * c * num_classes
            for n, c in enumerate(feature_dims)]


def isc_extra_macs(feature_dims: Sequence[int], num_classes: int) -> list[int]:
    """What ISC adds to each exit over the plain final linear (C c_n): 0 for exit 1, then
    2 C c_n + 2 c_n (CIFAR-100, c_n = 128: 25,856 MACs per exit)."""
    heads = isc_head_macs(feature_dims, num_classes)
    return [m - num_classes * c for m, c in zip(heads, feature_dims)]


def ofa_loss(outs: Sequence[Tensor], targets: Tensor, teacher: Tensor,
             kd_temperature: float = 1.0, kd_weight: float = 0.1, kd_reduction: str = "mean",
             weights: Sequence[float] | None = None) -> Tensor:
    """IMTA's stage-B loss (paper's one-for-all KD), summed over exits:

        CE(g_N, y) + sum_{n<N} (1 - gamma) CE(g_n, y) + gamma T^2 KL(softmax(sg(t)/T) || softmax(g_n/T))

    ``teacher`` t: the frozen stage-A network's last-exit logits for the same batch, [B, C].
    Defaults T = 1, gamma = 0.1: the reference's run script (run_IMTA.sh); its argument
    parser defaults are T = 3, gamma = 0.9 (args.py:136-140). ``kd_reduction='mean'``
    divides the KL by C as well (reference); 'batchmean' is the textbook KL.
    """
    return distillation_loss(outs, targets, teacher, kd_temperature, kd_weight, kd_reduction,
                             weights)
