"""Real early exits: a batch runs exit by exit and every sample leaves at its exit.

At exit n the samples still running get F_n (``combine`` of their raw logits f_1..f_n, e.g.
BoostNet's F_n = t_n F_{n-1} + f_n), a confidence score s_n and the class argmax F_n; those
with s_n >= T_n leave, the last exit takes the rest (the rule of ``bench.evaluate``, there
simulated from saved logits). The others go on from the backbone's kept intermediate state
(``begin``/``advance``/``select``, :class:`bench.backbones.common.ExitState`), so nothing
past a sample's exit is computed for it.

>>> classes, exits, conf = early_exit(model, method.combine, thresholds, x)
>>> classes, exits, conf = early_exit(model, method.combine, thresholds, x, batch_size=1)
>>> same = simulate(model(x), method.combine, thresholds)   # from a full forward's logits

``exits`` are 0-based (as ``bench.evaluate.assign_exits``); ``conf`` is the score at the exit
taken (float64). ``score`` is "max_softmax" (the max softmax of F_n in float64, computed as
``bench.evaluate.confidences``) or a function z [n, M, C] -> scores [n, M] whose row n
depends on rows 1..n only (the exit criteria's signature).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from bench.evaluate import confidences, exits_from_scores

Combine = Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]]
Score = Callable[[torch.Tensor], torch.Tensor]


def _check_thresholds(thresholds: Sequence[float], n_exits: int) -> torch.Tensor:
    """N values (the last is not used: the last exit takes everyone) or N-1, as float64."""
    t = [float(v) for v in thresholds]
    if len(t) == n_exits - 1:
        t.append(float("-inf"))
    if len(t) != n_exits:
        raise ValueError(f"thresholds has {len(t)} values for a model with {n_exits} exits; "
                         f"expected {n_exits} (the last is not used) or {n_exits - 1}")
    return torch.tensor(t, dtype=torch.float64)


def _check_score(score: str | Score) -> None:
    if score != "max_softmax" and not callable(score):
        raise ValueError(f"score must be 'max_softmax' or a function z [n, M, C] -> [n, M], "
                         f"got {score!r}")


def _score_last(score: str | Score, preds: Sequence[torch.Tensor]) -> torch.Tensor:
    """Score [M] float64 of the last of the per-exit predictions F_1..F_n."""
    if score == "max_softmax":
        return confidences([preds[-1]])[0][0]
    return score(torch.stack(list(preds)))[-1].double()


def _score_all(score: str | Score, preds: Sequence[torch.Tensor]) -> torch.Tensor:
    """Scores [N, M] float64 of every exit."""
    if score == "max_softmax":
        return confidences(preds)[0]
    return score(torch.stack(list(preds))).double()


def simulate(logits: Sequence[torch.Tensor], combine: Combine | None,
             thresholds: Sequence[float], score: str | Score = "max_softmax"
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Early-exit decisions computed from every exit's raw logits f_1..f_N [M, C] of one
    full forward: (classes, exits, confidences), as :func:`early_exit` returns them."""
    logits = [torch.as_tensor(f).detach() for f in logits]
    preds = list(combine(logits)) if combine is not None else logits
    t = _check_thresholds(thresholds, len(preds))
    _check_score(score)
    s = _score_all(score, preds)  # [N, M]
    exits = torch.from_numpy(exits_from_scores(s.cpu().numpy(), t.numpy())).long()  # [M]
    cols = torch.arange(s.shape[1])
    classes = torch.stack([p.max(dim=-1).indices for p in preds])[exits, cols]
    return classes, exits, s[exits, cols]


def _run(model: nn.Module, combine: Combine | None, t: torch.Tensor, x: torch.Tensor,
         score: str | Score) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m = x.shape[0]
    classes = torch.empty(m, dtype=torch.long)
    exits = torch.empty(m, dtype=torch.long)
    conf = torch.empty(m, dtype=torch.float64)
    running = torch.arange(m)  # original index of every sample still running
    state, raw = model.begin(x), []
    for n in range(model.num_exits):
        f, state = model.advance(state)
        raw.append(f)
        preds = list(combine(raw)) if combine is not None else raw
        s = _score_last(score, preds)
        leave = (s >= t[n]).cpu() if n + 1 < model.num_exits else torch.ones(len(s), dtype=bool)
        out = running[leave]
        classes[out] = preds[-1].max(dim=-1).indices[leave.to(f.device)].cpu()
        exits[out] = n
        conf[out] = s.cpu()[leave]
        if leave.all():
            break
        stay = ~leave
        running = running[stay]
        stay_dev = stay.to(f.device)
        raw = [r[stay_dev] for r in raw]
        state = state.select(stay_dev)
        _select_transient(model, stay_dev)
    return classes, exits, conf


def _select_transient(model: nn.Module, keep: torch.Tensor) -> None:
    """Keep the rows ``keep`` of per-forward tensors that modules hold between exits (a
    method's exit heads keep the previous exit's output, named in their ``TRANSIENT``), so
    that the next exit sees the samples still running, like the backbone's state."""
    for module in model.modules():
        for name in getattr(module, "TRANSIENT", ()):
            value = getattr(module, name, None)
            if isinstance(value, torch.Tensor) and value.shape[:1] == keep.shape:
                setattr(module, name, value[keep])


def early_exit(model: nn.Module, combine: Combine | None, thresholds: Sequence[float],
               x: torch.Tensor, score: str | Score = "max_softmax",
               batch_size: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``x`` [M, C, H, W] through ``model`` exit by exit with per-exit ``thresholds``:
    (classes [M] int64, exits [M] int64 0-based, confidences [M] float64), on the CPU.

    ``batch_size`` splits ``x`` into batches run one after another (1: one sample at a
    time; default: all of ``x`` at once). The model runs in eval mode under no_grad (its
    mode is restored afterwards). ``combine`` maps the raw logits of the exits so far to
    the per-exit predictions, causally (F_n depends on f_1..f_n): a method's ``combine``,
    or None for the raw logits."""
    t = _check_thresholds(thresholds, model.num_exits)
    _check_score(score)
    m = x.shape[0]
    size = max(m, 1) if batch_size is None else batch_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [_run(model, combine, t, x[i:i + size], score) for i in range(0, m, size)]
    finally:
        model.train(was_training)
    if not parts:  # no samples
        return (torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long),
                torch.empty(0, dtype=torch.float64))
    return tuple(torch.cat(p) for p in zip(*parts))
