"""Exit criteria: how confident exit n is about a sample, as a score s_n (higher = more
confident). A sample leaves at the first exit n with s_n >= T_n; the last exit takes the rest.

A criterion's ``score(z)`` maps per-exit logits z [N_exits, M, C] (float32 or float64; the
output of a combiner, so softmax(z_n) = p_n and -inf entries are classes with probability 0)
to scores [N_exits, M] float64. ``bounds(n_exits, n_classes)`` gives an interval that holds
every score, so that +-inf thresholds can be written as finite numbers with the same effect.

Register more with ``@register(name, bounds)`` (a plugin may do so); ``names()`` lists them and
``create(name)`` returns a :class:`Criterion`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from bench.evaluate.inputs import check_logits, stack_logits
from bench.registry import Registry


@dataclass(frozen=True)
class Criterion:
    name: str
    score: Callable[[torch.Tensor], torch.Tensor]  # z [N, M, C] -> s [N, M] float64
    bounds: Callable[[int, int], tuple[float, float]]  # (n_exits, n_classes) -> (low, high)


CRITERIA: Registry[Criterion] = Registry("exit criterion")


def register(name: str, bounds: Callable[[int, int], tuple[float, float]]):
    """Decorator that registers ``score(z) -> s`` as the criterion ``name``."""
    return CRITERIA.register(name, lambda score: Criterion(name, score, bounds))


def names() -> list[str]:
    """Registered criterion names, sorted."""
    return CRITERIA.names()


def create(name: str) -> Criterion:
    return CRITERIA.get(name)


MAX_SOFTMAX_BOUNDS = (0.0, 1.0)  # every max softmax lies inside: the default criterion's


@register("max_softmax", bounds=lambda n, c: MAX_SOFTMAX_BOUNDS)
def max_softmax(z):
    """s_n = max_y p_n(y) (MSDNet): [N, M] float64 from logits [N, M, C] of any float dtype
    (-inf entries allowed as long as every row has a finite maximum). The one max softmax
    of the harness: threshold fits, calibration, the caching combiner and real early exits
    all use it.

    max softmax = 1 / sum_j exp(z_j - z_max), in float64, one exit at a time: float32
    rounds the max softmax of every sample with a logit margin above ~17 to exactly 1.0,
    and such ties blur the threshold fit. (float16 and float32 logits convert to float64
    exactly: no rounding is added to the saved values.)
    """
    out = []
    for zn in check_logits(z):  # [M, C]: float64 temporaries of one exit only
        zn = zn.double()
        out.append(1.0 / (zn - zn.max(dim=-1, keepdim=True).values).exp().sum(-1))
    return torch.stack(out)


def confidences(preds) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, prediction), both [N, M]: the max softmax of F_n (float64) and its
    argmax, for ``preds`` as ``bench.evaluate.inputs.stack_logits`` takes them."""
    preds = stack_logits(preds)
    return max_softmax(preds), preds.max(dim=-1).indices


@register("entropy", bounds=lambda n, c: (-math.log(c), 0.0))
def entropy(z):
    """s_n = -H(p_n) = sum_y p log p, from log_softmax in float64 (0 log 0 = 0).

    Exiting when -H >= T is DeeBERT's rule H <= -T."""
    out = []
    for zn in check_logits(z):  # one exit at a time: [M, C] float64 temporaries only
        logp = torch.log_softmax(zn.double(), dim=-1)
        out.append(torch.where(logp.isneginf(), 0.0, logp.exp() * logp).sum(-1))
    return torch.stack(out)


@register("margin", bounds=lambda n, c: (0.0, 1.0))
def margin(z):
    """s_n = p_n(1st) - p_n(2nd), the gap between the two most probable classes (float64)."""
    z = check_logits(z)
    if z.shape[-1] < 2:
        raise ValueError(f"the margin criterion needs at least 2 classes, got {z.shape[-1]}")
    top2 = torch.stack([torch.softmax(zn.double(), dim=-1).topk(2, dim=-1).values for zn in z])
    return top2[..., 0] - top2[..., 1]


def patience_counters(z) -> torch.Tensor:
    """PABEE's counter c [N, M] int64: c_1 = 0, c_n = c_n-1 + 1 if argmax z_n = argmax z_n-1,
    else 0 (JetRunner/PABEE, modeling_bert.py)."""
    pred = check_logits(z).max(dim=-1).indices  # [N, M]
    counters = [torch.zeros_like(pred[0])]
    for n in range(1, len(pred)):
        counters.append(torch.where(pred[n] == pred[n - 1], counters[-1] + 1, 0))
    return torch.stack(counters)


@register("patience", bounds=lambda n, c: (0.0, float(n)))
def patience(z):
    """s_n = c_n + max softmax_n: PABEE's patience counter, ties broken by confidence.

    PABEE exits at the first n with c_n >= t for an integer patience t; that gives at most N
    operating points, so no threshold fit under a budget. The max softmax lies in (0, 1], so
    this score orders samples by c_n first and by confidence within equal counters: the
    per-exit (MSDNet) fit then applies unchanged, and a continuum of costs is reachable. Pure
    PABEE with patience t is the threshold ``pabee_threshold(t)`` at every exit but the last.
    """
    return patience_counters(z).double() + max_softmax(z)


def pabee_threshold(t: int) -> float:
    """The patience-score threshold equivalent to PABEE's c_n >= t (t >= 1).

    c_n + max softmax lies in (c_n, c_n + 1], so c_n >= t exactly when the score is > t,
    i.e. >= the next float above t."""
    if int(t) != t or t < 1:
        raise ValueError(f"patience t must be an integer >= 1, got {t}")
    return math.nextafter(float(t), math.inf)
