"""Predictions of a trained model over a split, in evaluation mode: F_n of every exit (what
the method predicts with, ``method.combine``) and, for saving, the raw head logits f_n too."""
from __future__ import annotations

import torch
from torch import nn


def _outputs(model: nn.Module, method, batches, num_exits: int | None, channels_last: bool):
    """Per batch: (raw head logits f_1..f_N, combined F_1..F_N, targets)."""
    model.eval()
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outs = model(x, num_exits=num_exits)
        yield outs, method.combine(outs), y


@torch.no_grad()
def predict(model: nn.Module, method, batches, num_exits: int | None = None,
            channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """F_n logits of every exit, shape [N, M, C] on the CPU, and the targets [M]."""
    logits, targets = [], []
    for _, combined, y in _outputs(model, method, batches, num_exits, channels_last):
        logits.append(torch.stack(combined).float().cpu())
        targets.append(y.cpu())
    return torch.cat(logits, dim=1), torch.cat(targets)


@torch.no_grad()
def predict_with_raw(model: nn.Module, method, batches, channels_last: bool = False,
                     dtype: torch.dtype = torch.float32
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(F [N, M, C], f [N, M, C], targets [M]) on the CPU: the combined logits of every exit
    and the raw head logits they were combined from, both in ``dtype`` (the runner saves
    float16; converting batch by batch gives the same values as converting at the end)."""
    combined_all, raw_all, targets = [], [], []
    for outs, combined, y in _outputs(model, method, batches, None, channels_last):
        combined_all.append(torch.stack(combined).to(dtype).cpu())
        raw_all.append(torch.stack(list(outs)).to(dtype).cpu())
        targets.append(y.cpu())
    return torch.cat(combined_all, dim=1), torch.cat(raw_all, dim=1), torch.cat(targets)
