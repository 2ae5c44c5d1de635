"""Naive gradient boosting: exits trained one after another (paper Sec. 3, "naive").

Stage n trains block n and head n on CE(t sg(F_{n-1}) + f_n, y) for its share of the epochs
(the total equals the joint methods'), then stage n+1 starts. ``freeze_previous`` (default
true) freezes earlier blocks and heads, as classic boosting fixes earlier learners; false
lets them keep training under the later losses, which the paper argues degrades the earlier
exits because they share the backbone.
"""
from __future__ import annotations

from typing import Sequence

from methods.base import BoostedEnsemble, register


@register("sequential")
class Sequential(BoostedEnsemble):
    def __init__(self, temperature: float | Sequence[float] = 1.0, freeze_previous: bool = True,
                 loss_weights: Sequence[float] | None = None):
        super().__init__(temperature, loss_weights, joint=False,
                         freeze_previous=freeze_previous, grad_rescale=False)

    def options(self) -> dict:
        return {"temperature": self.temperature, "freeze_previous": self.freeze_previous,
                "loss_weights": self.loss_weights}
