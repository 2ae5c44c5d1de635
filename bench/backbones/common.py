"""Pieces shared by the backbones."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch


class GradientRescale(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale`` on the way back.

    This is IMTA's "gradient equilibrium" operator that BoostNet uses for its gradient
    rescaling (paper Eq. 7): placed on a feature before a head (scale 1/(N-i)) and before
    the next block (scale (N-i-1)/(N-i)), the gradient that reaches block n becomes the mean
    of the gradients of the N-n+1 losses that depend on it.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def rescale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Apply :class:`GradientRescale`; a no-op outside autograd."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return x
    return GradientRescale.apply(x, scale)


@dataclass(frozen=True)
class ExitState:
    """Where a backbone's exit-by-exit run stands (the early-exit API).

    Every backbone has ``begin(x) -> ExitState`` (nothing computed yet) and
    ``advance(state) -> (logits, state)``, which computes the next exit's raw logits f_k from
    the kept intermediate maps and returns the state after exit k; ``state.select(keep)``
    keeps the samples a bool mask or an index tensor names, so those that left are never
    computed again. ``exits_done`` counts the exits computed so far; ``tensors`` holds the
    batch-first maps the next exit needs (lists, tuples and dicts of tensors, backbone
    specific); ``position`` any non-tensor bookkeeping of the backbone.
    """

    exits_done: int
    tensors: Any
    position: Any = None

    def select(self, keep: torch.Tensor) -> "ExitState":
        """The same state for the samples ``keep`` names (bool [B] or int64 indices)."""
        if keep.dtype == torch.bool:
            keep = keep.nonzero().flatten()
        return replace(self, tensors=_take(self.tensors, keep))

    def batch_size(self) -> int:
        """The number of samples still in the run."""
        first = _first_tensor(self.tensors)
        if first is None:
            raise ValueError("ExitState holds no tensor")
        return first.shape[0]


def _take(tree: Any, index: torch.Tensor) -> Any:
    """Rows ``index`` of every tensor in a nest of lists, tuples and dicts; the memory
    format (channels_last or not) is kept."""
    if isinstance(tree, torch.Tensor):
        out = tree.index_select(0, index.to(tree.device))
        if tree.dim() == 4 and not tree.is_contiguous() and tree.is_contiguous(
                memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(tree, (list, tuple)):
        return type(tree)(_take(t, index) for t in tree)
    if isinstance(tree, dict):
        return {k: _take(v, index) for k, v in tree.items()}
    raise TypeError(f"ExitState.tensors may hold tensors, lists, tuples and dicts, got "
                    f"{type(tree).__name__}")


def _first_tensor(tree: Any) -> torch.Tensor | None:
    if isinstance(tree, torch.Tensor):
        return tree
    for t in (tree.values() if isinstance(tree, dict) else tree):
        found = _first_tensor(t)
        if found is not None:
            return found
    return None


def check_advance(model: torch.nn.Module, state: ExitState) -> int:
    """The 0-based index of the exit ``advance`` computes next; an error past the last."""
    if state.exits_done >= model.num_exits:
        raise ValueError(f"all {model.num_exits} exits of {type(model).__name__} are computed "
                         f"already; begin a new run")
    return state.exits_done


def check_num_exits(num_exits: int | None, total: int) -> int:
    """Resolve the ``num_exits`` argument of a backbone's forward."""
    if num_exits is None:
        return total
    if not 1 <= num_exits <= total:
        raise ValueError(f"num_exits must be in 1..{total}, got {num_exits}")
    return num_exits


def _leaf_modules(model: torch.nn.Module):
    return [m for m in model.modules() if next(m.children(), None) is None]


def executed_modules(model: torch.nn.Module, num_exits: int,
                     input_size: tuple[int, int, int]) -> list[torch.nn.Module]:
    """Leaf modules that run when the model computes its first ``num_exits`` exits."""
    ran: dict[int, torch.nn.Module] = {}

    def note(module, _inputs, _output) -> None:  # a hook that returns None keeps the output
        ran.setdefault(id(module), module)

    hooks = [m.register_forward_hook(note) for m in _leaf_modules(model)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            param = next(model.parameters())
            model(torch.zeros(1, *input_size, dtype=param.dtype, device=param.device),
                  num_exits=num_exits)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return list(ran.values())


def parameters_per_exit(model: torch.nn.Module,
                        input_size: tuple[int, int, int] | None = None
                        ) -> list[list[torch.nn.Parameter]]:
    """For each exit n, the parameters that first run when exit n is computed.

    Group n holds what producing exits 1..n runs but producing exits 1..n-1 does not: for
    MSDNet that is block n (all its scales) and head n. Stage-wise methods train and freeze
    these groups. A parameter shared by two modules is counted once, in its first group.
    """
    input_size = input_size or model.input_size
    seen: set[int] = set()
    groups = []
    for n in range(1, model.num_exits + 1):
        group = []
        for module in executed_modules(model, n, input_size):
            for p in module.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    group.append(p)
        groups.append(group)
    return groups
