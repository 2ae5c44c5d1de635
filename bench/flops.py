"""Per-exit cost, counted the way an early-exit network runs.

Exit n's cost is everything executed to produce exits 1..n in sequence, earlier heads
included (docs/paper.md, "Counting FLOPs"). The unit is the multiply-accumulate (MAC):
one fused multiply-add = 1, fvcore's convention; batch norm, adaptive average pooling and
upsampling are counted as fvcore counts them, pooling, ReLU and elementwise ops are free.

Two counters give the same numbers for every registered backbone (tests/test_flops.py
checks it: the CIFAR-size backbones on every run of the tests, the ImageNet-size ones with
BENCH_SLOW_TESTS=1):

- ``fvcore`` (the default): fvcore traces with torch.jit and drops every op whose result
  is not returned. An early-exit network runs every scale of every block it enters, also
  scales that only later exits read, so the traced function returns the output of every
  leaf module that ran, not only the logits.
- ``torch``: ``torch.utils.flop_counter.FlopCounterMode`` (no jit: it watches the ops as
  they run, so nothing is dropped), which counts 2 x MACs for convolutions and matrix
  products, plus batch norm, adaptive average pooling and upsampling given fvcore's
  formulas. It exists because fvcore's last release is from 2022 and torch deprecates
  torch.jit: when fvcore cannot trace on some future torch, :func:`per_exit` raises a
  :class:`CounterError` that names this counter (``BENCH_FLOP_COUNTER=torch``). The switch
  is deliberate, not automatic: a suite's costs should come from one counter, and a
  plugin backbone may use ops the two counters have not been checked on.

Attention (the ViTs, bench.backbones.vit): softmax(q k^T / sqrt(e)) v costs L S e MACs
for q k^T plus L S e_v for the product with v, per image and head (q [L, e], k [S, e],
v [S, e_v]); the scaling and the softmax are free like every elementwise op. fvcore counts
the unfused form (two ``aten::matmul``) so by itself, but not torch's fused
``scaled_dot_product_attention`` that timm calls: :data:`ATTENTION_OPS` gives it that
count (its own entry in :func:`fvcore_by_operator`), and the torch counter the same for
the fused CPU kernel (FlopCounterMode knows the CUDA ones). Layer norm is counted with
fvcore's convention, 5 MACs per element with an affine transform (4 without); GELU is
free like ReLU.

Every op either counter meets is decided on purpose: it is counted, or it is in the zero-
cost lists below; anything else raises :class:`UnsupportedOpError`, and a count of zero
for a model with parameters raises :class:`CounterError`: never a silent zero.

A method's modules attached to the model (methods.heads) run inside its forward, so they
are traced and counted at the exit that runs them, like the backbone's own layers.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from bench.backbones.common import _leaf_modules, parameters_per_exit
from bench.fileio import write_json

COUNTERS = ("fvcore", "torch")
COUNTER_ENV = "BENCH_FLOP_COUNTER"

# Ops that fvcore would report as unsupported, and why each costs 0 here.
ZERO_COST_OPS = {
    # Pooling: fvcore's convention is to leave it out (the reference counter counts it;
    # the two conventions differ by about 0.5% on MSDNet, docs/paper.md).
    "aten::avg_pool2d": 0, "aten::max_pool2d": 0, "aten::mean": 0,
    # Elementwise arithmetic (residual adds, the ensemble F_n = t F_{n-1} + f_n, bilinear
    # interpolation's weights): not multiply-adds of a layer, left out like ReLU.
    "aten::add": 0, "aten::add_": 0, "aten::mul": 0, "aten::mul_": 0, "aten::div": 0,
    "aten::sub": 0, "aten::rsub": 0,
    # Softmax and friends belong to the exit decision, not to the network.
    "aten::softmax": 0, "aten::max": 0,
    # The gradient-rescale autograd function is an identity in the forward pass.
    "prim::PythonOp.GradientRescale": 0,
    # Activations other than ReLU (the ViTs' MLPs): free like ReLU.
    "aten::gelu": 0,
}


def attention_macs(q_shape, k_shape, v_shape) -> int:
    """MACs of softmax(q k^T / sqrt(e)) v for q [..., L, e], k [..., S, e], v [..., S, e_v]:
    L S e for q k^T and L S e_v for the weighted sum of v, times the leading (batch, head)
    dimensions; the scaling and the softmax are free."""
    *lead, length, e = q_shape
    s, e_v = k_shape[-2], v_shape[-1]
    return math.prod(lead) * length * s * (e + e_v)


def _attention_fvcore(inputs, outputs) -> int:
    """fvcore handle of aten::scaled_dot_product_attention (inputs: jit values q, k, v, ...)."""
    return attention_macs(*(v.type().sizes() for v in inputs[:3]))


# fvcore handles of ours, by traced op (fvcore's by_operator names them by the key's tail).
ATTENTION_OPS = {"aten::scaled_dot_product_attention": _attention_fvcore}

# The same decisions for the ops the torch counter sees (after autograd and composite ops
# are decomposed): ZERO_COST_OPS, the ops fvcore ignores silently (ReLU, concatenation,
# views and copies), and plain tensor plumbing.
TORCH_ZERO_COST_OPS = frozenset({
    "avg_pool2d", "max_pool2d", "max_pool2d_with_indices", "mean",  # mean outside adaptive pooling
    "add", "add_", "mul", "mul_", "div", "div_", "sub", "sub_", "rsub",
    "_softmax", "softmax", "max", "amax",
    "relu", "relu_", "gelu", "cat", "stack", "clamp", "clamp_", "constant_pad_nd", "roll",
    "gather",
    "empty", "empty_like", "zeros", "zeros_like", "ones", "full", "new_empty", "new_zeros",
    "fill_", "zero_", "arange", "copy_", "clone", "_to_copy", "detach", "alias", "lift_fresh",
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "slice",
    "select", "squeeze", "unsqueeze", "unsqueeze_", "split", "split_with_sizes", "unbind",
    "as_strided", "index", "masked_fill", "eq", "ge", "gt", "floor", "remainder",
})


class UnsupportedOpError(RuntimeError):
    """A counter met an op whose cost nobody decided; count it or add it to the zero-cost
    lists (ZERO_COST_OPS for fvcore, TORCH_ZERO_COST_OPS for the torch counter)."""


class CounterError(RuntimeError):
    """The FLOP counter could not count a model (fvcore's torch.jit trace failed, or it
    counted nothing); the message names the fallback."""


def counter_name(counter: str | None = None) -> str:
    """The counter to use: ``counter`` if given, else $BENCH_FLOP_COUNTER, else fvcore."""
    name = counter or os.environ.get(COUNTER_ENV) or "fvcore"
    if name not in COUNTERS:
        raise ValueError(f"unknown FLOP counter {name!r} (argument or ${COUNTER_ENV}); "
                         f"known: {', '.join(COUNTERS)}")
    return name


@contextmanager
def _quiet_fvcore():
    """fvcore uses torch.jit (script at import, trace to count), which torch deprecates;
    that warning is about fvcore, not about anything a user of this project can change, so
    it is silenced here, at our boundary with fvcore, and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+`? is deprecated")
        yield


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


def _fallback_hint() -> str:
    return (f"Set {COUNTER_ENV}=torch to count with torch.utils.flop_counter.FlopCounterMode "
            "instead (no jit; same MACs as fvcore for every registered backbone, checked by "
            "tests/test_flops.py)")


def _fvcore_analysis(model: nn.Module, k: int, x: torch.Tensor):
    """fvcore's analysis of the work up to exit k, traced, with our op decisions."""
    try:
        with _quiet_fvcore():
            from fvcore.nn import FlopCountAnalysis
    except ImportError as e:
        raise CounterError(f"fvcore is not importable ({e}). {_fallback_hint()}.") from e
    analysis = FlopCountAnalysis(_TraceUpToExit(model, k), (x,))
    analysis.set_op_handle(**{op: None for op in ZERO_COST_OPS}, **ATTENTION_OPS)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)  # the trace's own chatter; we check below
    try:
        with _quiet_fvcore():
            analysis.total()  # traces once; later queries reuse the trace
    except Exception as e:
        raise CounterError(
            f"fvcore could not trace {type(model).__name__} (exit {k}) with torch.jit on torch "
            f"{torch.__version__}: {type(e).__name__}: {e}. {_fallback_hint()}.") from e
    finally:
        fvcore_logger.setLevel(level)
    unknown = dict(analysis.unsupported_ops())
    if unknown:
        raise UnsupportedOpError(
            f"fvcore cannot count these ops of {type(model).__name__}: {unknown}; "
            "give them a handle or add them to bench.flops.ZERO_COST_OPS")
    return analysis


def _count_fvcore(model: nn.Module, k: int, x: torch.Tensor) -> int:
    return int(_fvcore_analysis(model, k, x).total())


def fvcore_by_operator(model: nn.Module, input_size: tuple[int, int, int] | None = None,
                       exits: list[int] | None = None) -> list[dict[str, int]]:
    """fvcore's cumulative MACs to produce exits 1..n split by operator ('conv', 'linear',
    'batch_norm', ...), for n in ``exits`` (1-based; all by default), for cross-checks
    against other counters."""
    return _per_exit(model, input_size, lambda m, k, x: {
        op: int(v) for op, v in _fvcore_analysis(m, k, x).by_operator().items()}, exits)


class _OpRecorder(TorchDispatchMode):
    """Records the name of every aten op that runs (after decomposition)."""

    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func._overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _torch_formulas(inside_adaptive_pool: list[int]) -> dict:
    """FlopCounterMode formulas (shapes in, 2 x MACs out) for what fvcore counts beyond
    convolutions and matrix products, with fvcore's conventions: eval-mode batch norm 1 MAC
    per element (2 with an affine transform), layer norm 5 (4 without), adaptive average
    pooling 1 per input element, bilinear upsampling 4 and nearest 1 per output element;
    and the fused CPU attention kernel as :func:`attention_macs`."""
    aten = torch.ops.aten

    def batch_norm(x_shape, w_shape=None, *args, out_shape=None, **kwargs):
        return 2 * math.prod(x_shape) * (2 if w_shape is not None else 1)

    def adaptive_pool(x_shape, *args, out_shape=None, **kwargs):
        return 2 * math.prod(x_shape)

    def mean(x_shape, *args, out_shape=None, **kwargs):
        # torch runs adaptive_avg_pool2d to 1x1 as a mean; fvcore, which sees the module's
        # op, counts it as pooling. A mean anywhere else costs 0 (ZERO_COST_OPS).
        return 2 * math.prod(x_shape) if inside_adaptive_pool[0] else 0

    def upsample(per_output):
        return lambda x_shape, *args, out_shape=None, **kwargs: 2 * per_output * math.prod(out_shape)

    def layer_norm(x_shape, normalized_shape, w_shape=None, *args, out_shape=None, **kwargs):
        return 2 * math.prod(x_shape) * (5 if w_shape is not None else 4)

    def attention(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
        return 2 * attention_macs(q_shape, k_shape, v_shape)

    return {aten.native_batch_norm: batch_norm, aten._native_batch_norm_legit: batch_norm,
            aten._native_batch_norm_legit_no_training: batch_norm,
            aten._adaptive_avg_pool2d: adaptive_pool, aten.mean: mean,
            aten.upsample_bilinear2d: upsample(4), aten.upsample_nearest2d: upsample(1),
            aten.native_layer_norm: layer_norm,
            aten._scaled_dot_product_flash_attention_for_cpu: attention}


def _count_torch(model: nn.Module, k: int, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    inside = [0]  # depth of nn.AdaptiveAvgPool2d calls we are in

    def enter(*_):
        inside[0] += 1

    def leave(*_):
        inside[0] -= 1

    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    hooks = [h for m in pools for h in (m.register_forward_pre_hook(enter),
                                        m.register_forward_hook(leave))]
    counter = FlopCounterMode(display=False, custom_mapping=_torch_formulas(inside))
    try:
        with counter, _OpRecorder() as recorder:
            model(x, num_exits=k)
    finally:
        for h in hooks:
            h.remove()
    counted = {op._overloadpacket.__name__ if hasattr(op, "_overloadpacket") else op.__name__
               for op in counter.flop_registry}
    unknown = sorted(recorder.ops - counted - TORCH_ZERO_COST_OPS)
    if unknown:
        raise UnsupportedOpError(
            f"the torch counter cannot count these ops of {type(model).__name__}: {unknown}; "
            "give them a formula or add them to bench.flops.TORCH_ZERO_COST_OPS")
    return counter.get_total_flops() // 2  # FlopCounterMode counts 2 x MACs


_COUNT = {"fvcore": _count_fvcore, "torch": _count_torch}


def _per_exit(model: nn.Module, input_size, count, exits: list[int] | None = None) -> list:
    input_size = tuple(input_size or model.input_size)
    exits = list(exits or range(1, model.num_exits + 1))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = torch.zeros(1, *input_size, dtype=param.dtype, device=param.device)
        with torch.no_grad():
            return [count(model, k, x) for k in exits]
    finally:
        model.train(was_training)


def per_exit(model: nn.Module, input_size: tuple[int, int, int] | None = None,
             counter: str | None = None) -> list[int]:
    """Cumulative MACs (one image) to produce exits 1..n, for n = 1..num_exits, counted by
    ``counter`` (see :func:`counter_name`; fvcore by default)."""
    name = counter_name(counter)
    counts = _per_exit(model, input_size, _COUNT[name])
    if any(c <= 0 for c in counts) and any(p.numel() for p in model.parameters()):
        raise CounterError(f"the {name} counter counted {counts} MACs for {type(model).__name__}, "
                           f"which has parameters: a count of 0 is never right here"
                           + (f". {_fallback_hint()}." if name == "fvcore" else ""))
    return counts


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
    the model's modules and of this counter, the input size, the counter chosen and the
    library versions."""
    try:
        from importlib.metadata import version
        fvcore_version = version("fvcore")
    except Exception:  # not installed: the torch counter may still be chosen
        fvcore_version = "?"
    parts = [repr(model), str(tuple(input_size)), torch.__version__, counter_name(),
             fvcore_version, Path(__file__).read_text()]
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
    if not isinstance(cache, dict):  # valid JSON of another shape: repaired like invalid
        cache = {}
    counts = cache.get(key)
    if not (isinstance(counts, list) and len(counts) == model.num_exits
            and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)):
        cache[key] = per_exit(model, input_size)
        try:
            write_json(path, cache)
        except OSError:
            pass  # a read-only home still gets correct (uncached) counts
    return list(cache[key])
