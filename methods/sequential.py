"""Naive gradient boosting: exits trained one after another (paper Sec. 3, "naive").

Stage n trains block n and head n on CE(t sg(F_{n-1}) + f_n, y) for its share of the epochs
(the total equals the joint methods'), then stage n+1 starts. ``freeze_previous`` (default
true) freezes earlier blocks and heads, as classic boosting fixes earlier learners; false
lets them keep training under the later losses, which the paper argues degrades the earlier
exits because they share the backbone. ``temperature`` (default 1: the previous ensemble
added unweighted) can be tuned like BoostNet's.
"""
from __future__ import annotations

from methods.base import (BoostedEnsemble, LOSS_WEIGHTS, TEMPERATURE_RANGE, register,
                          temperature_option)
from methods.options import BOOL, Option


@register("sequential")
class Sequential(BoostedEnsemble):
    OPTIONS = (
        temperature_option(1.0),
        Option("freeze_previous", BOOL, True, "freeze earlier exits while a later stage trains"),
        LOSS_WEIGHTS,
    )
    SEARCH_SPACE = {"temperature": TEMPERATURE_RANGE}
    joint = False
    grad_rescale = False
