"""Method-owned modules at a backbone's exits, attached from outside the backbone.

Every backbone's exit n ends in a linear layer whose output *is* exit n's logits (MSDNet's
``heads[n][-1]``, RANet's ``classifier[n].linear``). :func:`final_linears` finds those layers
by running the model once and matching layer outputs to returned logits, so no backbone
needs to know that methods exist. :func:`attach` then

- registers the method's :class:`ExitHeads` on the model as ``model.method_modules`` (so
  they move with it, are saved in its state dict, train under DDP and land in the per-exit
  parameter groups of the exits whose forward runs them), and
- puts an :class:`ExitLinear` in place of each final linear: it holds the same ``weight``
  and ``bias`` under the same names (the backbone's state-dict keys do not change) and hands
  the head's pooled feature h_n to the method's heads, which decide what exit n returns:
  the backbone's own linear, a new layer that also reads the previous exit's output, or both.

Since all this runs inside the model's forward, fvcore's trace counts the method's layers
at the exit that runs them (bench.flops). Elementwise work fvcore skips is the method's
``analytic_macs``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODULES = "method_modules"  # attribute of the model holding the method's modules


@dataclass(frozen=True)
class ExitShape:
    """What a method needs to build a layer for an exit: the width of h_n and the classes."""

    features: int  # c_n, the in_features of the exit's final linear
    classes: int


class ExitHeads(nn.Module):
    """The method's modules at the exits. Subclasses override :meth:`head`; the base class
    returns the backbone's own linear (a method whose modules are used elsewhere, e.g. in
    ``combine``, keeps the heads as they are).

    ``head`` is called for exits 1..k in order within one forward; ``previous`` is what the
    exit before returned in this forward (None for exit 1).
    """

    TRANSIENT: tuple[str, ...] = ("_previous",)  # tensors of the last forward only

    def __init__(self):
        super().__init__()
        self._previous: Tensor | None = None
        # True: every exit returns the backbone's own linear, the method's modules idle (the
        # regimes' phase 1, methods.regimes); not in the state dict.
        self.bypass = False

    def __getstate__(self):
        """Copies and pickles leave out the last forward's tensors (they may carry a graph,
        which ``copy.deepcopy`` refuses)."""
        state = dict(super().__getstate__())
        for name in self.TRANSIENT:
            state[name] = None
        return state

    def head(self, n: int, h: Tensor, linear: "ExitLinear", previous: Tensor | None) -> Tensor:
        return linear.original(h)

    def exit_forward(self, linear: "ExitLinear", h: Tensor) -> Tensor:
        n = linear.exit_index
        previous = None if n == 0 else self._previous
        if n > 0 and previous is None:
            raise RuntimeError(f"exit {n + 1} ran before exit {n} in this forward")
        linear.parameters_used = False
        out = linear.original(h) if self.bypass else self.head(n, h, linear, previous)
        self._previous = out
        return out


class ExitLinear(nn.Module):
    """Stands in for exit n's final ``nn.Linear``: same ``weight``/``bias`` (same keys), its
    forward handed to the method's :class:`ExitHeads`.

    ``parameters_used`` says whether the last forward used ``weight``/``bias`` (bench.flops
    leaves idle parameters out of the per-exit parameter count)."""

    def __init__(self, linear: nn.Linear, exit_index: int, heads: ExitHeads):
        super().__init__()
        self.weight = linear.weight
        if linear.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.exit_index = exit_index
        self.parameters_used = True
        # Not a child module: the heads are registered once, as model.method_modules.
        object.__setattr__(self, "heads", heads)

    def original(self, h: Tensor) -> Tensor:
        """The backbone's own final linear: W h + b, [B, C]."""
        self.parameters_used = True
        return F.linear(h, self.weight, self.bias)

    def forward(self, h: Tensor) -> Tensor:
        return self.heads.exit_forward(self, h)

    def extra_repr(self) -> str:
        return (f"exit={self.exit_index + 1}, in_features={self.in_features}, "
                f"out_features={self.out_features}, heads={type(self.heads).__name__}")


def _input_size(model: nn.Module) -> tuple[int, ...]:
    size = getattr(model, "input_size", None)
    if size is None:
        raise ValueError(f"{type(model).__name__} has no input_size; method modules need "
                         "one forward pass to find the exits' final layers")
    return tuple(size)


def final_linears(model: nn.Module) -> list[nn.Module]:
    """Exit n's final layer for n = 1..N: the ``nn.Linear`` (or an attached
    :class:`ExitLinear`) whose output is exit n's logits. Raises ValueError naming the exit
    where no such layer exists."""
    made_by: dict[int, nn.Module] = {}

    def note(module, _inputs, output):
        made_by[id(output)] = module

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, ExitLinear))]
    hooks = [m.register_forward_hook(note) for m in layers]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        with torch.no_grad():
            logits = model(torch.zeros(1, *_input_size(model), dtype=param.dtype,
                                       device=param.device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    found = [made_by.get(id(z)) for z in logits]
    for n, layer in enumerate(found):
        if layer is None:
            raise ValueError(f"{type(model).__name__}: exit {n + 1}'s logits are not the output "
                             "of a linear layer, so a method cannot take over its final layer")
    return found


def exit_shapes(linears: list[nn.Module]) -> list[ExitShape]:
    return [ExitShape(m.in_features, m.out_features) for m in linears]


def _owner(model: nn.Module, target: nn.Module) -> tuple[nn.Module, str]:
    names = [name for name, m in model.named_modules(remove_duplicate=False) if m is target]
    if len(names) != 1:
        raise ValueError(f"an exit's final layer is registered under {len(names)} names "
                         f"({names}); it must have exactly one")
    parent, _, attr = names[0].rpartition(".")
    return model.get_submodule(parent), attr


def attach(model: nn.Module, heads: ExitHeads, linears: list[nn.Module] | None = None) -> None:
    """Register ``heads`` as ``model.method_modules`` and route every exit's final linear
    through it (``linears``: from :func:`final_linears`, found here if not given)."""
    if has_modules(model):
        raise ValueError(f"{type(model).__name__} already has method modules "
                         f"({type(getattr(model, MODULES)).__name__})")
    linears = linears if linears is not None else final_linears(model)
    if any(isinstance(m, ExitLinear) for m in linears):
        raise ValueError("the exits' final layers are already routed to method modules")
    model.add_module(MODULES, heads)
    for n, linear in enumerate(linears):
        parent, attr = _owner(model, linear)
        setattr(parent, attr, ExitLinear(linear, n, heads))


def has_modules(model: nn.Module) -> bool:
    return isinstance(getattr(model, MODULES, None), nn.Module)


def modules_of(model: nn.Module) -> nn.Module | None:
    """The method modules attached to ``model`` (None without)."""
    return getattr(model, MODULES) if has_modules(model) else None


def method_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the method's modules (empty without)."""
    mods = modules_of(model)
    return list(mods.parameters()) if mods is not None else []


@contextlib.contextmanager
def bypassed(model: nn.Module):
    """Within the block, the model's method modules (if any) idle: every exit returns the
    backbone's own final linear."""
    mods = modules_of(model)
    if mods is None:
        yield
        return
    was = mods.bypass
    mods.bypass = True
    try:
        yield
    finally:
        mods.bypass = was


def last_exit_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the last exit's logits depend on, the method's modules idle: the
    backbone and its final head (every block on the way, the final exit's own layers),
    found by differentiating the last exit's logits of one forward; the earlier exits'
    heads are not among them."""
    params = list(model.parameters())
    wanted = [p.requires_grad for p in params]
    was_training = model.training
    try:
        for p in params:
            p.requires_grad_(True)
        model.eval()  # batch statistics of one dummy image would fail, running ones do not
        first = params[0]
        x = torch.zeros(2, *_input_size(model), dtype=first.dtype, device=first.device)
        with bypassed(model), torch.enable_grad():
            last = model(x)[-1]
            grads = torch.autograd.grad(last.sum(), params, allow_unused=True)
    finally:
        model.train(was_training)
        for p, w in zip(params, wanted):
            p.requires_grad_(w)
    return [p for p, g in zip(params, grads) if g is not None]


def forward_with_features(model: nn.Module, x: Tensor, num_exits: int | None = None
                          ) -> tuple[list[Tensor], list[Tensor]]:
    """``model(x, num_exits)`` and every computed exit's pooled feature h_n (the input of its
    final linear layer), [B, c_n] each. Works with or without method modules."""
    routed = sorted((m for m in model.modules() if isinstance(m, ExitLinear)),
                    key=lambda m: m.exit_index)
    layers = routed or final_linears(model)
    features: dict[int, Tensor] = {}

    def keep(n):
        def hook(_module, inputs):
            features[n] = inputs[0]
        return hook

    hooks = [m.register_forward_pre_hook(keep(n)) for n, m in enumerate(layers)]
    try:
        logits = model(x, num_exits=num_exits)
    finally:
        for h in hooks:
            h.remove()
    return logits, [features[n] for n in range(len(logits))]
