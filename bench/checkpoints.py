"""Load checkpoints saved by the reference implementations into this project's backbones.

>>> model = checkpoints.load("model_best.pth", "msdnet10_cifar")   # num_classes from the file

Containers recognised (the file's contents decide, not its name):
- BoostNet reference (SHI-Labs/Boosted-Dynamic-Networks): ``DynamicNet.state_dict()`` is
  ``{'model': state_dict}``; its training scripts save ``model_latest.pth`` /
  ``model_best.pth`` as ``{'epoch', 'state_dict': {'model': state_dict}, 'optimizer',
  'scheduler'}``. Both ``msdnet`` and ``msdnet_ge`` (same parameters) and RANet.
- MSDNet-PyTorch (kalviny): ``{'epoch', 'arch', 'state_dict': state_dict, 'best_prec1',
  'optimizer'}`` in a ``.pth.tar``.
- A bare state dict, ours or the references'; this project's own training checkpoints
  (``{'model': state_dict, ...}``) load too.
``module.`` prefixes (DataParallel, DistributedDataParallel) are stripped in every format.

Names. Our RANet keeps the reference's parameter paths. Our MSDNet has the same modules
in the same order but names them differently; :func:`msdnet_key` translates by the explicit
rules in ``_MSDNET_RULES`` (reference module on the left, ours on the right in each
comment). Keys already in our naming pass through unchanged.

Files are read with ``torch.load(weights_only=True)``. The BoostNet reference's training
checkpoints hold numpy float64 weight decays in their optimizer state (from
``np.linspace``), which the restricted unpickler refuses by default; numpy scalars and
dtypes (under numpy 1's and numpy 2's names), and nothing else, are allowlisted for that.
No format needs ``weights_only=False``.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from bench import backbones
from bench.backbones.msdnet import MSDNet

LIST_LIMIT = 20  # keys shown per category in an error message


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the requested backbone."""


# Reference MSDNet (models/msdnet.py, models/msdnet_ge.py) -> ours, applied in order.
_MSDNET_RULES: list[tuple[re.Pattern, str]] = [(re.compile(p), r) for p, r in [
    # ClassifierModule.linear -> heads[i][4] (conv, conv, pool, flatten, linear)
    (r"^classifier\.(\d+)\.linear\.", r"heads.\1.4."),
    # ClassifierModule.m[k] -> heads[i][k]
    (r"^classifier\.(\d+)\.m\.(\d+)\.", r"heads.\1.\2."),
    # ConvBasic.net / ConvBN.net: the wrapped Sequential is the module itself here
    (r"\.net\.", "."),
    # ConvDownNormal / ConvNormal: conv_down, conv_normal -> ScaleUnit.down, .normal
    (r"\.conv_(down|normal)\.", r".\1."),
    # MSDNLayer.layers[u] -> MSDLayer.units[u] (the stem MSDNFirstLayer.layers stays)
    (r"^(blocks\.\d+\.\d+)\.layers\.(\d+)\.(down|normal)\.", r"\1.units.\2.\3."),
    # transition ParallelModule.m[s] -> Transition.convs[s]
    (r"^(blocks\.\d+\.\d+)\.m\.(\d+)\.", r"\1.convs.\2."),
]]


def msdnet_key(key: str) -> str:
    """Our MSDNet's name for a reference MSDNet state-dict key (ours map to themselves)."""
    for pattern, replacement in _MSDNET_RULES:
        key = pattern.sub(replacement, key)
    return key


def _same_key(key: str) -> str:
    return key


def key_translator(model: nn.Module) -> Callable[[str], str]:
    """Reference name -> our name for this model's kind (identity where the names agree)."""
    return msdnet_key if isinstance(model, MSDNet) else _same_key


def strip_module_prefix(key: str) -> str:
    """Drop DataParallel/DistributedDataParallel's ``module.`` prefix (possibly nested)."""
    while key.startswith("module."):
        key = key[len("module."):]
    return key


def _numpy_scalar_globals() -> list:
    """numpy scalars and dtypes. numpy 2 pickles scalars as numpy._core.multiarray.scalar,
    numpy 1 (the references' era) as numpy.core.multiarray.scalar: both are allowed."""
    core = np._core if hasattr(np, "_core") else np.core
    scalar = core.multiarray.scalar
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def read(path: str | Path) -> object:
    """The unpickled file, read with ``weights_only=True`` (numpy scalars allowed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    # torch < 2.5 lacks safe_globals: numpy scalars then fail with the message below
    allow = getattr(torch.serialization, "safe_globals", None)
    try:
        with allow(_numpy_scalar_globals()) if allow else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling, zip and torch errors all mean "unreadable"
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint with "
                              f"weights_only=True: {err}") from err


def _is_state_dict(obj) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def state_dict_of(obj, path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The model weights inside any of the recognised containers, ``module.`` stripped."""
    inner = obj
    for wrapper in ("state_dict", "model"):  # {'state_dict': {'model': sd}} nests both
        if isinstance(inner, Mapping) and wrapper in inner and not _is_state_dict(inner):
            inner = inner[wrapper]
    if not _is_state_dict(inner):
        top = list(obj)[:LIST_LIMIT] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path}: no state dict found; expected a mapping of names to tensors, "
            f"{{'model': state_dict}}, {{'state_dict': state_dict}} or "
            f"{{'state_dict': {{'model': state_dict}}}}; the file holds {top}")
    out: dict[str, torch.Tensor] = {}
    for key, value in inner.items():
        name = strip_module_prefix(key)
        if name in out:
            raise CheckpointError(f"{path}: key {key!r} appears twice once 'module.' "
                                  f"prefixes are stripped")
        out[name] = value
    return out


def translate(state: Mapping[str, torch.Tensor], model: nn.Module,
              path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Rename a (prefix-free) state dict to ``model``'s parameter names."""
    to_ours = key_translator(model)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = to_ours(key)
        if name in out:
            raise CheckpointError(f"{path}: keys {key!r} and another map to the same "
                                  f"name {name!r}")
        out[name] = value
    return out


def mismatches(state: Mapping[str, torch.Tensor], model: nn.Module
               ) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mis-shaped) keys of ``state`` against ``model``'s state dict."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    return missing, unexpected, misshaped


def by_module(keys: list[str]) -> list[str]:
    """Keys of one module on one line: 'heads.0.1.1.{weight, bias, running_mean}'."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        module, _, leaf = key.rpartition(".")
        groups.setdefault(module, []).append(leaf)
    return [f"{m}.{leaves[0]}" if len(leaves) == 1 else f"{m}.{{{', '.join(leaves)}}}"
            for m, leaves in groups.items()]


def _listing(title: str, count: int, lines: list[str]) -> str:
    shown = "\n".join(f"    {line}" for line in lines[:LIST_LIMIT])
    more = f"\n    ... and {len(lines) - LIST_LIMIT} more lines" if len(lines) > LIST_LIMIT else ""
    return f"  {title} ({count}):\n{shown}{more}"


def _final_linear_name(model: nn.Module) -> str | None:
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _classes_in(state: Mapping[str, torch.Tensor], model: nn.Module) -> int | None:
    """Rows of the final linear layer's weight in ``state`` (the number of classes)."""
    name = _final_linear_name(model)
    weight = state.get(f"{name}.weight") if name else None
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def load(path: str | Path, backbone: str, num_classes: int | None = None,
         **overrides) -> nn.Module:
    """Our ``backbone`` (with ``overrides``) holding the weights of the checkpoint at ``path``.

    ``num_classes`` defaults to the width of the checkpoint's final linear layer. Raises
    :class:`CheckpointError` naming the file and listing every missing, unexpected and
    mis-shaped key (in our naming) when the weights do not fit the model exactly.
    """
    raw = state_dict_of(read(path), path)
    model = backbones.create(backbone, num_classes=num_classes, **overrides)
    state = translate(raw, model, path)
    if num_classes is None:
        found = _classes_in(state, model)
        if found is not None and found != _classes_in(model.state_dict(), model):
            model = backbones.create(backbone, num_classes=found, **overrides)
    missing, unexpected, misshaped = mismatches(state, model)
    if missing or unexpected or misshaped:
        parts = [_listing(title, len(keys), lines) for title, keys, lines in (
            ("missing from the file", missing, by_module(missing)),
            ("unexpected in the file", unexpected, by_module(unexpected)),
            ("mis-shaped", misshaped, misshaped)) if keys]
        raise CheckpointError(
            f"{path}: the weights do not fit backbone {backbone!r}"
            f"{' with ' + repr(overrides) if overrides else ''} (keys after mapping to "
            f"this project's names):\n" + "\n".join(parts))
    model.load_state_dict(state)
    return model
