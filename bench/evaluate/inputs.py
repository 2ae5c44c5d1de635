"""What every evaluation function takes, checked in one place.

- logits: per-exit F_n (or a combiner's z_n) as a Tensor [N_exits, M, C] or a list of N
  tensors [M, C]; float64 stays float64 (a combiner's output), anything else (the saved
  float16) is computed in float32;
- targets: class indices [M], int64;
- exit costs: the cumulative cost of reaching exit n (MMACs), non-decreasing;
- budgets: mean costs per image in the same unit, between the first and the last exit's.
"""
from __future__ import annotations

import torch


def check_logits(z, what: str = "logits") -> torch.Tensor:
    """``z`` as a Tensor [N_exits, M, C], dtype unchanged; a ValueError names the shape."""
    z = torch.as_tensor(z)
    if z.dim() != 3:
        raise ValueError(f"{what} must be [N_exits, M, C], got shape {tuple(z.shape)}")
    return z


def stack_logits(preds, what: str = "preds") -> torch.Tensor:
    """[N_exits, M, C] from a tensor or a list of [M, C] tensors: float64 kept, any other
    dtype as float32."""
    if isinstance(preds, (list, tuple)):
        preds = torch.stack([torch.as_tensor(p) for p in preds])
    preds = check_logits(preds, what)
    return preds if preds.dtype == torch.float64 else preds.float()


def as_targets(targets) -> torch.Tensor:
    """Class indices [M] as int64."""
    return torch.as_tensor(targets).long()


def check_exit_costs(exit_costs, n_exits: int) -> list[float]:
    """The cumulative cost of every exit as floats: one per exit, non-decreasing."""
    costs = [float(c) for c in exit_costs]
    if len(costs) != n_exits:
        raise ValueError(f"exit_flops has {len(costs)} entries for {n_exits} exits")
    if any(b < a for a, b in zip(costs, costs[1:])):
        raise ValueError(f"exit_flops must be cumulative (non-decreasing), got {costs}")
    return costs


def check_budgets(budgets, exit_costs: list[float]) -> None:
    """Every budget between the cost of the first and of the last exit (a ValueError names
    the first that is not)."""
    for b in budgets:
        if not exit_costs[0] <= b <= exit_costs[-1]:
            raise ValueError(f"budget {b} is outside the valid range [{exit_costs[0]}, "
                             f"{exit_costs[-1]}] (cost of the first to the last exit)")
