"""BoostNet (Yu et al., AAAI 2023) with each of its three techniques switchable.

- mini-batch joint optimization (``joint``, default on): one forward over all exits and one
  backward of L = sum_n w_n CE(t_n sg(F_{n-1}) + f_n, y) per mini-batch (paper Eq. 5);
  off, the same ensemble is trained stage by stage (stage n on exit n's loss alone, earlier
  exits frozen unless ``freeze_previous`` is false), like naive boosting;
- prediction reweighting (``temperature``, default 0.5 for every exit): F_n = t_n F_{n-1} + f_n
  (paper Eq. 8), the same t_n in training and inference;
- gradient rescaling (``grad_rescale``, default on): the gradient reaching block n is the
  mean over the N-n+1 losses that depend on it (paper Eq. 7), installed on the backbone.
"""
from __future__ import annotations

from typing import Sequence

from methods.base import BoostedEnsemble, register


@register("boostnet")
class BoostNet(BoostedEnsemble):
    def __init__(self, temperature: float | Sequence[float] = 0.5, grad_rescale: bool = True,
                 joint: bool = True, loss_weights: Sequence[float] | None = None,
                 freeze_previous: bool = True):
        super().__init__(temperature, loss_weights, joint=joint,
                         freeze_previous=freeze_previous, grad_rescale=grad_rescale)
