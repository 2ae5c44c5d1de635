"""Anytime accuracy: how often each exit's prediction is right on a whole split (MSDNet's
anytime prediction), from saved logits only."""
from __future__ import annotations

import math

from bench.evaluate.inputs import as_targets, stack_logits


def topk_accuracy(preds, targets, k: int) -> list[float]:
    """Top-k accuracy (percent) of every exit; k larger than the class count counts as C.

    ``preds`` [N_exits, M, C] (bench.evaluate.inputs), ``targets`` [M]. Ties between
    classes are broken by ``topk``."""
    preds, targets = stack_logits(preds), as_targets(targets)
    top = preds.topk(min(k, preds.shape[-1]), dim=-1).indices  # [N, M, k]
    hit = (top == targets[None, :, None]).any(dim=-1)  # [N, M]
    # exact counts (no float32 rounding); NaN for an empty split
    return [100.0 * h.sum().item() / h.numel() if h.numel() else math.nan for h in hit]


def anytime_accuracy(preds, targets) -> list[float]:
    """Top-1 accuracy (percent) of every exit on the whole split (MSDNet anytime prediction)."""
    return topk_accuracy(preds, targets, 1)
