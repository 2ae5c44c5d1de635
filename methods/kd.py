"""Distillation from the last exit (``kd``): online self-distillation, teacher = the last
exit of the same forward, always detached.

    L = w_N CE(f_N, y) + sum_{n<N} w_n [ (1-alpha) CE(f_n, y)
                                         + alpha T^2 KL(softmax(sg(f_N)/T) || softmax(f_n/T)) ]

with the batch-mean KL (the textbook KL), terms summed over exits, not averaged. Defaults
T = 1, alpha = 0.75: Zero Time Waste's ``ce_kd`` loss (gmum/Zero-Time-Waste:
ztw_cv_original/model_funcs.py:61-79, train_networks.py:312-313). F_n = f_n at inference;
no parameters, no inference cost; a training step costs about a joint step.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from methods.base import LOSS_WEIGHTS, Method, register
from methods.lib.distill import distillation_sample_losses
from methods.options import NUMBER, Option


@register("kd")
class LastExitDistillation(Method):
    OPTIONS = (
        Option("temperature", NUMBER, 1.0, "distillation temperature T (> 0)", low=1e-6),
        Option("alpha", NUMBER, 0.75, "weight of the distillation term at exits 1..N-1 "
                                      "(1 - alpha weighs their cross-entropy)",
               low=0.0, high=1.0),
        LOSS_WEIGHTS,
    )

    def sample_losses(self, outs: Sequence[Tensor], targets: Tensor) -> Tensor:
        """Per-sample objective of every exit, [N, B]: its batch mean, weighted by
        ``loss_weights`` and summed, is the loss (methods.lib.distill)."""
        return distillation_sample_losses(outs, targets, outs[-1], self.temperature,
                                          self.alpha, "batchmean")
