"""Numeric precision of training (``training.precision``): which one a device gets, and the
autocast, gradient scaler and optimizer step that go with it.

``fp32`` trains in float32. ``bf16`` and ``fp16`` run the forward (and so the backward)
under ``torch.autocast`` with that dtype while the weights, the optimizer state and the
losses stay float32 (methods compute their losses on ``.float()`` logits). fp16's narrow
exponent range makes small gradients underflow, so fp16 scales the loss before backward
(``torch.amp.GradScaler``) and unscales the gradients before the step; bf16 has float32's
exponent range and needs no scaler. ``auto`` is bf16 on a CUDA GPU that supports it
natively and fp32 everywhere else (on a CPU autocast rarely pays). fp16 is a GPU precision:
on a CPU it resolves to fp32, as ``training.amp: true`` (which it replaces, with the same
run ids) always did there.
"""
from __future__ import annotations

from typing import Callable

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve(precision: str, device: torch.device | str) -> str:
    """The precision ``precision`` means on ``device``: ``auto`` becomes bf16 or fp32, fp16
    on a CPU fp32, the others stay as they are (bf16 on a GPU without native bf16 support is
    an error)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, "
                         f"found {precision!r}")
    device = torch.device(device)
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported(including_emulation=False)
        if precision == "auto":
            return "bf16" if supported else "fp32"
        if precision == "bf16" and not supported:
            raise ValueError(f"precision bf16: {torch.cuda.get_device_name(device)} has no "
                             f"native bfloat16; use fp16 or fp32")
        return precision
    return "fp32" if precision in ("auto", "fp16") else precision


def autocast(resolved: str, device: torch.device | str, cache: bool = True) -> torch.autocast:
    """The autocast context of a resolved precision (disabled for fp32); ``cache`` false:
    no cache of the weights' casts (what a step recorded as a CUDA graph uses)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES.get(resolved, torch.bfloat16),
                          enabled=resolved in AUTOCAST_DTYPES, cache_enabled=cache)


def grad_scaler(resolved: str, device: torch.device | str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (disabled, it passes values through)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=resolved == "fp16")


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
                   ) -> Callable[[torch.Tensor], None]:
    """``step(loss)``: zero_grad, the (scaled) backward, the (unscaled) optimizer step; an
    fp16 step whose gradients overflowed is skipped and the scale lowered."""

    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step
