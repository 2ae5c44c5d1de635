"""An early-exit network cut into stages, one per exit, for export as separate graphs.

Stage n (1-based) runs what the backbone's ``advance`` runs between exit n-1 and exit n
(the blocks, then exit n's head) and the method's ``combine`` of the raw logits so far.
Everything that crosses from one stage to the next is an explicit, batch-first tensor with
a name, so that a runtime without Python (ONNX Runtime) can keep the rows of the images
still running and drop the others, as bench.inference.early_exit does with ``select``:

- ``x``: the images [B, C, H, W] (stage 1's input);
- ``state{n}.{path}``: the backbone's state after exit n (``ExitState.tensors`` flattened
  in pytree order; ``path`` its keys: MSDNet's ``state2.0`` .. ``state2.2`` are the scales,
  RANet's ``state2.h``, ``state2.later.0``, ...; a single tensor is ``state2``);
- ``heads{n}.{module}.{attr}``: the per-forward tensors a method's modules keep between
  exits after exit n (their ``TRANSIENT``: IMTA's and ZTW's heads read the previous exit's
  output);
- ``raw{n}``: f_n, the head's raw logits [B, K]; ``logits{n}``: F_n, the method's combined
  logits [B, K] (what exit n predicts with; BoostNet: F_n = t_n F_{n-1} + f_n).

Stage n's inputs are ``x`` (n = 1) or state{n-1}.*, heads{n-1}.* and raw1..raw{n-1}; its
outputs ``logits{n}``, ``raw{n}``, then (but for the last stage) state{n}.* and heads{n}.*.
What stays the same from batch to batch (which blocks run, the backbone's non-tensor
``position``, the pytree structure) is read from a sample forward and fixed in the stage:
it does not depend on the images (the backbones' exit-by-exit contract).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.utils._pytree as pytree
from torch import nn

from bench.backbones.common import ExitState

Combine = Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]]
IMAGES = "x"


@dataclass(frozen=True)
class StagePlan:
    """Stage ``index`` (0-based): ``module(*example)`` returns the ``outputs`` in order."""

    index: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    module: nn.Module
    example: tuple[torch.Tensor, ...]


def _path_name(path) -> str:
    """A pytree key path as dotted text: (SequenceKey(0),) -> '0', (MappingKey('h'),) -> 'h'."""
    parts = []
    for key in path:
        for attr in ("idx", "key", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


def state_names(n: int, tensors) -> list[str]:
    """Names of the leaves of ``tensors`` (a backbone's state after exit n), pytree order."""
    paths = [p for p, _ in pytree.tree_flatten_with_path(tensors)[0]]
    return [f"state{n}" + (f".{_path_name(p)}" if p else "") for p in paths]


def transient_slots(network: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(dotted module name, module, attribute) of every per-forward tensor slot the
    network's modules declare in ``TRANSIENT``."""
    return [(name, module, attr) for name, module in network.named_modules()
            for attr in getattr(module, "TRANSIENT", ())]


def _clear_transient(slots) -> None:
    for _, module, attr in slots:
        setattr(module, attr, None)


def _held(slots, batch: int) -> list[tuple[str, nn.Module, str]]:
    """The slots that hold a tensor of this batch now."""
    return [(name, m, a) for name, m, a in slots
            if isinstance(getattr(m, a, None), torch.Tensor)
            and getattr(m, a).shape[:1] == (batch,)]


class Stage(nn.Module):
    """Stage ``n`` (0-based) of ``network`` as a module of positional tensors (module doc).

    ``spec``/``position``: the state's pytree structure and non-tensor position before
    this stage (unused for n = 0); ``carried_in``/``carried_out``: the transient slots read
    before and held after it; ``n_raw``: raw logits given (the exits before this one);
    ``last``: no state is handed on."""

    def __init__(self, network: nn.Module, combine: Combine, n: int, spec, position,
                 n_state: int, carried_in: list, carried_out: list, last: bool):
        super().__init__()
        self.network = network
        self.combine = combine
        self.n, self.spec, self.position, self.n_state = n, spec, position, n_state
        self.carried_in, self.carried_out, self.last = carried_in, carried_out, last

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k, c = self.n_state, len(self.carried_in)
        state_in, held, raw = inputs[:k], inputs[k:k + c], list(inputs[k + c:])
        if self.n == 0:
            state = self.network.begin(state_in[0])
        else:
            state = ExitState(self.n, pytree.tree_unflatten(list(state_in), self.spec),
                              self.position)
        _clear_transient(transient_slots(self.network))
        for (_, module, attr), value in zip(self.carried_in, held):
            setattr(module, attr, value)
        f, after = self.network.advance(state)
        combined = list(self.combine(raw + [f]))[-1]  # F_n from f_1..f_n
        out = [combined, f]
        if not self.last:
            out += pytree.tree_leaves(after.tensors)
            out += [getattr(module, attr) for _, module, attr in self.carried_out]
        return tuple(out)


def plan_stages(network: nn.Module, combine: Combine | None, x: torch.Tensor
                ) -> list[StagePlan]:
    """The network's stages (module doc), with inputs of the sample batch ``x`` for
    tracing. ``network`` must be in eval mode; ``combine`` None: F_n = f_n."""
    if network.training:
        raise ValueError("plan_stages needs the network in eval mode (batch norm with its "
                         "running statistics)")
    combine = combine or (lambda raw: list(raw))
    slots = transient_slots(network)
    _clear_transient(slots)
    batch, total = x.shape[0], network.num_exits
    plans, state, raws, carried = [], network.begin(x), [], []
    with torch.no_grad():
        for n in range(total):
            last = n + 1 == total
            if n == 0:
                names_in, leaves, spec = [IMAGES], [x], None
            else:
                leaves, spec = pytree.tree_flatten(state.tensors)
                names_in = state_names(n, state.tensors)
            held_in = [getattr(m, a) for _, m, a in carried]
            f, after = network.advance(state)
            carried_out = [] if last else _held(slots, batch)
            stage = Stage(network, combine, n, spec, state.position, len(leaves), carried,
                          carried_out, last).eval()
            inputs = (names_in + [f"heads{n}.{name}.{a}" for name, _, a in carried]
                      + [f"raw{i + 1}" for i in range(n)])
            outputs = [f"logits{n + 1}", f"raw{n + 1}"]
            if not last:
                outputs += state_names(n + 1, after.tensors)
                outputs += [f"heads{n + 1}.{name}.{a}" for name, _, a in carried_out]
            example = tuple(t.contiguous() for t in [*leaves, *held_in, *raws])
            plans.append(StagePlan(n, tuple(inputs), tuple(outputs), stage, example))
            raws.append(f)
            state, carried = after, carried_out
    _clear_transient(slots)
    return plans
