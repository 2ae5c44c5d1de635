"""Per-exit cost with fvcore, counted the way an early-exit network runs.

Exit n's cost is everything executed to produce exits 1..n in sequence, earlier heads
included (method.md, "Counting FLOPs"). fvcore counts one fused multiply-add as one flop,
so the numbers here are MACs.

fvcore traces with torch.jit and drops every op whose result is not returned. An early-exit
network runs every scale of every block it enters, also scales that only later exits read,
so the traced function returns the output of every leaf module that ran, not only the
logits. Every op fvcore meets is decided on purpose: it is counted by fvcore's handles, or
is in ZERO_COST_OPS below; anything else raises :class:`UnsupportedOpError`.

A method's modules attached to the model (methods.heads) run inside its forward, so they
are traced and counted at the exit that runs them, like the backbone's own layers.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from bench.backbones.common import _leaf_modules, parameters_per_exit
from bench.fileio import write_json

# Ops that fvcore would report as unsupported, and why each costs 0 here.
ZERO_COST_OPS = {
    # Pooling: fvcore's convention is to leave it out (the reference counter counts it;
    # the two conventions differ by about 0.5% on MSDNet, method.md).
    "aten::avg_pool2d": 0, "aten::max_pool2d": 0, "aten::mean": 0,
    # Elementwise arithmetic (residual adds, the ensemble F_n = t F_{n-1} + f_n, bilinear
    # interpolation's weights): not multiply-adds of a layer, left out like ReLU.
    "aten::add": 0, "aten::add_": 0, "aten::mul": 0, "aten::mul_": 0, "aten::div": 0,
    "aten::sub": 0, "aten::rsub": 0,
    # Softmax and friends belong to the exit decision, not to the network.
    "aten::softmax": 0, "aten::max": 0,
    # The gradient-rescale autograd function is an identity in the forward pass.
    "prim::PythonOp.GradientRescale": 0,
}


class UnsupportedOpError(RuntimeError):
    """fvcore met an op whose cost nobody decided; count it or add it to ZERO_COST_OPS."""


class _TraceUpToExit(nn.Module):
    """Runs ``model(x, num_exits=k)`` and returns the logits plus every leaf module's output,
    so that the jit trace keeps all the work an early-exit network does to reach exit k."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x):
        kept: list[torch.Tensor] = []

        def keep(_module, _inputs, output):
            outs = output if isinstance(output, (list, tuple)) else [output]
            kept.extend(o for o in outs if isinstance(o, torch.Tensor))

        hooks = [m.register_forward_hook(keep) for m in _leaf_modules(self.model)]
        try:
            logits = self.model(x, num_exits=self.k)
        finally:
            for h in hooks:
                h.remove()
        return tuple(logits) + tuple(kept)


def _count(model: nn.Module, k: int, x: torch.Tensor) -> int:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(_TraceUpToExit(model, k), (x,))
    analysis.set_op_handle(**{op: None for op in ZERO_COST_OPS})
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)  # the trace's own chatter; we check below
    try:
        total = analysis.total()
    finally:
        fvcore_logger.setLevel(level)
    unknown = dict(analysis.unsupported_ops())
    if unknown:
        raise UnsupportedOpError(
            f"fvcore cannot count these ops of {type(model).__name__}: {unknown}; "
            "give them a handle or add them to bench.flops.ZERO_COST_OPS")
    return int(total)


def per_exit(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> list[int]:
    """Cumulative fvcore MACs (one image) to produce exits 1..n, for n = 1..num_exits."""
    input_size = tuple(input_size or model.input_size)
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = torch.zeros(1, *input_size, dtype=param.dtype, device=param.device)
        with torch.no_grad():
            return [_count(model, k, x) for k in range(1, model.num_exits + 1)]
    finally:
        model.train(was_training)


def params_per_exit(model: nn.Module, input_size: tuple[int, int, int] | None = None
                    ) -> list[int]:
    """Cumulative parameter count of everything executed to produce exits 1..n.

    A module that ran without using its parameters says so with ``parameters_used =
    False`` (an exit's final linear that a method's module replaced at inference): those
    are left out."""
    groups = parameters_per_exit(model, input_size)
    idle = {id(p) for m in model.modules() if getattr(m, "parameters_used", True) is False
            for p in m.parameters(recurse=False)}
    counts, total = [], 0
    for group in groups:
        total += sum(p.numel() for p in group if id(p) not in idle)
        counts.append(total)
    return counts


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "boostnet-bench" / "costs.json"


def _source_files(model: nn.Module) -> list[str]:
    """The files defining the model's class and every submodule class outside torch (a
    method's modules included): their code decides what the forward runs."""
    files = {inspect.getfile(type(model))}
    files |= {inspect.getfile(type(m)) for m in model.modules()
              if not type(m).__module__.startswith("torch.")}
    return sorted(files)


def _fingerprint(model: nn.Module, input_size) -> str:
    """What the count depends on: the architecture (the module tree's repr), the code of
    the model's modules and of this counter, the input size and the library versions."""
    import fvcore

    parts = [repr(model), str(tuple(input_size)), torch.__version__,
             getattr(fvcore, "__version__", "?"), Path(__file__).read_text()]
    parts += [Path(f).read_text() for f in _source_files(model)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def per_exit_cached(model: nn.Module, input_size: tuple[int, int, int] | None = None
                    ) -> list[int]:
    """:func:`per_exit`, remembered on disk (the count takes seconds for large backbones;
    suites count every backbone on every load). BENCH_NO_COST_CACHE=1 turns it off."""
    input_size = tuple(input_size or model.input_size)
    if os.environ.get("BENCH_NO_COST_CACHE"):
        return per_exit(model, input_size)
    key, path = _fingerprint(model, input_size), _cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = per_exit(model, input_size)
        try:
            write_json(path, cache)
        except OSError:
            pass  # a read-only home still gets correct (uncached) counts
    return list(cache[key])
