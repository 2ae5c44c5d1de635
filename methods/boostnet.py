"""BoostNet (Yu et al., AAAI 2023) with each of its three techniques switchable.

- mini-batch joint optimization (``joint``, default on): one forward over all exits and one
  backward of L = sum_n w_n CE(t_n sg(F_{n-1}) + f_n, y) per mini-batch (paper Eq. 5);
  off, the same ensemble is trained stage by stage (stage n on exit n's loss alone, earlier
  exits frozen unless ``freeze_previous`` is false), like naive boosting;
- prediction reweighting (``temperature``, default 0.5 for every exit): F_n = t_n F_{n-1} + f_n
  (paper Eq. 8), the same t_n in training and inference; ``tuned`` searches it with Optuna
  on the held-out split (0.05..2.0, log-uniform, shared or per exit);
- gradient rescaling (``grad_rescale``, default on): the gradient reaching block n is the
  mean over the N-n+1 losses that depend on it (paper Eq. 7), installed on the backbone.
"""
from __future__ import annotations

from methods.base import (BoostedEnsemble, LOSS_WEIGHTS, TEMPERATURE_RANGE, register,
                          temperature_option)
from methods.options import BOOL, Option


@register("boostnet")
class BoostNet(BoostedEnsemble):
    OPTIONS = (
        temperature_option(0.5),
        Option("grad_rescale", BOOL, True, "gradient rescaling (paper Eq. 7)"),
        Option("joint", BOOL, True, "one joint backward per mini-batch; false: stage-wise"),
        LOSS_WEIGHTS,
        Option("freeze_previous", BOOL, True,
               "with joint false: freeze earlier exits while a later stage trains"),
    )
    SEARCH_SPACE = {"temperature": TEMPERATURE_RANGE}
    PAPER_CURVE = "BoostNet"
