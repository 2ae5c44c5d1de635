"""Registry of multi-exit backbones, in the style of timm's ``register_model``.

A registered constructor is a plain function ``fn(num_classes, **overrides) -> nn.Module``.
Every model it returns has ``num_exits``, ``input_size`` (C, H, W) and
``forward(x, num_exits=None) -> list[Tensor]``: the raw head logits f_1..f_k of the first
``num_exits`` exits (all by default), computing nothing past exit k.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Decorator that registers a backbone constructor under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def names() -> list[str]:
    """Registered backbone names, sorted."""
    return sorted(_REGISTRY)


def create(name: str, num_classes: int = 100, **overrides) -> nn.Module:
    """Build the backbone registered as ``name``; ``overrides`` are architecture arguments."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name](num_classes=num_classes, **overrides)
