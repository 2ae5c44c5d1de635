"""Post-hoc combiners: new per-exit predictions from the saved F_n, with no training.

A combiner maps F [N_exits, M, C] (what the method's ``combine`` produced) to per-exit logits
z [N_exits, M, C]: log-probabilities up to a constant per row, so p_n = softmax(z_n). Entries
may be -inf (a class with probability 0); every row keeps a finite maximum. Exit n's output
depends on exits 1..n only, so early exiting stays causal. The cost is elementwise work only.

Register more with ``@register(name)`` on ``fn(F, **options)``; ``create(name, **options)``
returns a function of F alone and rejects unknown options at once.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable

import torch

from bench.evaluate.criteria import max_softmax
from bench.evaluate.inputs import check_logits
from bench.registry import Registry

COMBINERS: Registry[Callable[..., torch.Tensor]] = Registry("combiner")


def register(name: str):
    """Decorator that registers ``fn(F, **options) -> z`` as the combiner ``name``."""
    return COMBINERS.register(name)


def names() -> list[str]:
    """Registered combiner names, sorted."""
    return COMBINERS.names()


def create(name: str, **options) -> Callable[[torch.Tensor], torch.Tensor]:
    """The combiner ``name`` with its options bound: a function F -> z."""
    fn = COMBINERS.get(name)
    try:
        inspect.signature(fn).bind(None, **options)
    except TypeError:
        valid = list(inspect.signature(fn).parameters)[1:]
        raise ValueError(f"combiner {name!r} got options {sorted(options)}; "
                         f"valid options: {valid or 'none'}") from None
    return functools.partial(fn, **options)


@register("none")
def none(f):
    """Identity: z_n = F_n, unchanged (dtype included)."""
    return check_logits(f)


def _product_weights(weights, n):
    if weights is None:
        return torch.ones(n, dtype=torch.float64)
    if isinstance(weights, str) and weights == "linear":
        return torch.arange(1, n + 1, dtype=torch.float64) / n  # w_i = i/N, the PA paper's figures
    w = None if isinstance(weights, str) else torch.as_tensor(weights, dtype=torch.float64)
    if w is None or w.shape != (n,) or not bool((w > 0).all()):
        raise ValueError(f"product weights must be {n} positive numbers (one per exit), "
                         f"None or 'linear'; got {weights!r}")
    return w


@register("product")
def product(f, weights=None):
    """Product anytime (PA, metodj/AnytimeClassification): p_n(y) ∝ prod_{i<=n} max(F_i,y, 0)^w_i.

    Computed in log space, float64: z_n = sum_{i<=n} w_i log relu(F_i). The ReLU floor sends a
    class with F_i,y <= 0 at any exit i to -inf for good (eliminated). A row in which every
    class is eliminated falls back to z_n = F_n, i.e. softmax(F_n). ``weights``: None (all 1),
    'linear' (w_i = i/N) or N positive numbers. Returns float64 logits.
    """
    f = check_logits(f)
    w = _product_weights(weights, f.shape[0])
    out = torch.empty(f.shape, dtype=torch.float64)  # [N, M, C]
    z = torch.zeros(f.shape[1:], dtype=torch.float64)  # running sum, [M, C]
    for n, (fn, wn) in enumerate(zip(f, w.tolist())):  # one exit at a time: less memory
        fn = fn.double()
        z += fn.clamp_min(0).log_().mul_(wn)  # log 0 = -inf; w_i > 0 keeps it -inf, never NaN
        eliminated = z.isneginf().all(dim=-1, keepdim=True)  # [M, 1]
        torch.where(eliminated, fn, z, out=out[n])
    return out


@register("caching")
def caching(f):
    """Caching anytime (CA, metodj/AnytimeClassification): z_n = F_k(n), where k(n) is the
    latest exit i <= n with the highest max softmax (ties go to the later exit), so the
    confidence of the prediction never decreases. Returns F's rows (dtype unchanged)."""
    f = check_logits(f)
    conf = max_softmax(f)  # [N, M] float64
    best, best_conf = torch.zeros_like(conf[0], dtype=torch.long), conf[0]
    chosen = [best]
    for n in range(1, len(conf)):
        later = conf[n] >= best_conf  # >=: a tie moves to the later exit
        best = torch.where(later, n, best)
        best_conf = torch.where(later, conf[n], best_conf)
        chosen.append(best)
    k = torch.stack(chosen)  # [N, M]
    return f.gather(0, k[..., None].expand_as(f))
