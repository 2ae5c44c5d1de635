"""Knowledge distillation into early exits.

    L = w_N CE(f_N, y)
      + sum_{n<N} w_n [ (1-alpha) CE(f_n, y) + alpha T^2 KL(softmax(sg(t)/T) || softmax(f_n/T)) ]

with the teacher t = f_N for plain self-distillation (:func:`kd_loss`) or any given tensor
(IMTA's frozen first-stage network, :mod:`methods.lib.isc`). The teacher is always detached,
terms are summed over exits (not averaged), and the last exit trains on cross-entropy alone.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("batchmean", "mean")


def kl_per_sample(student: Tensor, teacher: Tensor, temperature: float,
                  reduction: str = "batchmean") -> Tensor:
    """Each sample's term of :func:`kl_to_teacher`, shape [B]: sum_c p_t log(p_t / p_s)
    with p = softmax(logits / T) (``batchmean``), divided by C as well for ``mean``. The
    batch mean of it is :func:`kl_to_teacher`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"KL reduction {reduction!r} is not one of {', '.join(REDUCTIONS)}")
    if temperature <= 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    log_p_student = F.log_softmax(student / temperature, dim=1)  # [B, C]
    log_p_teacher = F.log_softmax(teacher.detach() / temperature, dim=1)  # [B, C], sg
    per_sample = F.kl_div(log_p_student, log_p_teacher, reduction="none",
                          log_target=True).sum(dim=1)  # [B]
    return per_sample if reduction == "batchmean" else per_sample / student.shape[1]


def kl_to_teacher(student: Tensor, teacher: Tensor, temperature: float,
                  reduction: str = "batchmean") -> Tensor:
    """KL(softmax(sg(teacher)/T) || softmax(student/T)) for logits of shape [B, C].

    ``batchmean`` divides the summed KL by B (the textbook KL, a batch mean); ``mean``
    divides by B*C, as ``nn.KLDivLoss()`` did by default when IMTA used it
    (kalviny/IMTA:utils.py:20). Both are computed from the sum here, because torch has
    announced that its own ``reduction="mean"`` will become ``batchmean``.
    """
    return kl_per_sample(student, teacher, temperature, reduction).mean()


def distillation_sample_losses(outs: Sequence[Tensor], targets: Tensor, teacher: Tensor,
                               temperature: float, alpha: float,
                               reduction: str = "batchmean") -> Tensor:
    """Each exit's per-sample term of :func:`distillation_loss` before the exit weights,
    [N, B]: CE for the last exit, (1-alpha) CE + alpha T^2 KL for the others; its batch
    mean, weighted and summed over exits, is the loss."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distillation weight alpha must be in [0, 1], got {alpha}")
    rows = []
    for f_n in outs[:-1]:
        ce = F.cross_entropy(f_n, targets, reduction="none")
        soft = temperature ** 2 * kl_per_sample(f_n, teacher, temperature, reduction)
        rows.append((1.0 - alpha) * ce + alpha * soft)
    rows.append(F.cross_entropy(outs[-1], targets, reduction="none"))
    return torch.stack(rows)


def distillation_loss(outs: Sequence[Tensor], targets: Tensor, teacher: Tensor,
                      temperature: float, alpha: float, reduction: str = "batchmean",
                      weights: Sequence[float] | None = None) -> Tensor:
    """The loss in the module docstring: exits 1..N-1 distil from ``teacher``, exit N does not."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distillation weight alpha must be in [0, 1], got {alpha}")
    w = _exit_weights(weights, len(outs))
    loss = w[-1] * F.cross_entropy(outs[-1], targets)
    for n, f_n in enumerate(outs[:-1]):
        soft = temperature ** 2 * kl_to_teacher(f_n, teacher, temperature, reduction)
        loss = loss + w[n] * ((1.0 - alpha) * F.cross_entropy(f_n, targets) + alpha * soft)
    return loss


def kd_loss(outs: Sequence[Tensor], targets: Tensor, temperature: float = 1.0,
            alpha: float = 0.75, reduction: str = "batchmean",
            weights: Sequence[float] | None = None) -> Tensor:
    """Online distillation from the last exit of the same forward, t = sg(f_N).

    Defaults T = 1, alpha = 0.75, batch-mean KL: the ``ce_kd`` loss of
    gmum/Zero-Time-Waste:ztw_cv_original/model_funcs.py:61-79 (train_networks.py:312-313).
    """
    return distillation_loss(outs, targets, outs[-1], temperature, alpha, reduction, weights)


def _exit_weights(weights: Sequence[float] | None, num_exits: int) -> list[float]:
    if weights is None:
        return [1.0] * num_exits
    if len(weights) != num_exits:
        raise ValueError(f"loss weights has {len(weights)} values for {num_exits} exits")
    return [float(v) for v in weights]
