"""Registry of multi-exit backbones, in the style of timm's ``register_model``.

A registered constructor is a plain function ``fn(num_classes, **overrides) -> nn.Module``.
Every model it returns has ``num_exits``, ``input_size`` (C, H, W) and
``forward(x, num_exits=None) -> list[Tensor]``: the raw head logits f_1..f_k of the first
``num_exits`` exits (all by default), computing nothing past exit k; and the exit-by-exit
API ``begin(x)``, ``advance(state) -> (f_k, state)``, ``state.select(keep)``
(:class:`bench.backbones.common.ExitState`).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from bench.registry import Registry

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


def register(name: str):
    """Decorator that registers a backbone constructor under ``name``."""
    return BACKBONES.register(name)


def names() -> list[str]:
    """Registered backbone names, sorted."""
    return BACKBONES.names()


def create(name: str, num_classes: int | None = None, **overrides) -> nn.Module:
    """Build the backbone registered as ``name``; ``overrides`` are architecture arguments.

    ``num_classes`` defaults to the configuration's own (100 for CIFAR-100 configurations,
    1000 for ImageNet ones)."""
    constructor = BACKBONES.get(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    return constructor(**overrides)
