"""Predictions of a trained model: F_n of every exit over a split, in evaluation mode."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, method, batches, num_exits: int | None = None,
            channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """F_n logits of every exit, shape [N, M, C] on the CPU, and the targets [M]."""
    model.eval()
    logits, targets = [], []
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        combined = method.combine(model(x, num_exits=num_exits))
        logits.append(torch.stack(combined).float().cpu())
        targets.append(y.cpu())
    return torch.cat(logits, dim=1), torch.cat(targets)
