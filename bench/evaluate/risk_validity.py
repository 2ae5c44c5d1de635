"""Validity diagnostic of the risk-controlled thresholds, on the held-out split alone.

R times (seeded) the held-out images are split at random into two halves; λ̂ is fitted on the
first half and its risk measured on the second. Per loss, procedure and ε: the mean of those
risks (crc promises E[R(λ̂)] <= ε) and the share of repeats whose risk exceeds ε (ucb and ltt
promise at most δ), each up to the Monte Carlo error of R repeats and the finite second half.
The test split is never read.
"""
import numpy as np
import torch

from bench.evaluate.exit_probs import check_heldout_size, check_probs, confidences
from bench.evaluate.risk import (DEFAULT_DELTA, DEFAULT_EPSILONS, DEFAULT_GRID, LOSS_BOUNDS,
                                 PROCEDURES, check_options, lambda_grid, last_passing,
                                 loss_matrix, passes)

DEFAULT_REPEATS = 100


def half_splits(n, repeats, seed=0):
    """``repeats`` random (fit, check) index pairs of sizes floor(n/2) and n - floor(n/2)."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(repeats):
        order = torch.randperm(n, generator=generator)
        yield order[:n // 2], order[n // 2:]


def check_repeats(repeats):
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")


def validity_diagnostic(probs, labels, *, losses=tuple(LOSS_BOUNDS), procedures=PROCEDURES,
                        epsilons=DEFAULT_EPSILONS, delta=DEFAULT_DELTA, grid=DEFAULT_GRID,
                        repeats=DEFAULT_REPEATS, seed=0, confidence=None):
    """One row per (loss, procedure, ε): mean risk and share of repeats with risk > ε."""
    check_options(losses=losses, procedures=procedures, epsilons=epsilons, delta=delta,
                  grid=grid)
    check_repeats(repeats)
    probs, labels = check_probs(probs, labels)
    check_heldout_size(len(labels) // 2, "half of the held-out split")
    c, lambdas = confidences(probs, confidence), lambda_grid(grid)
    fit_rows, check_rows = half_masks(len(labels), repeats, seed)  # the same halves for every row
    rows = []
    for loss in losses:
        matrix = loss_matrix(probs, labels, c, loss, lambdas)  # [N, G], computed once per loss
        fit_risks = (fit_rows @ matrix / fit_rows[0].sum()).numpy()  # R̂(λ) per repeat [R, G]
        check_risks = (check_rows @ matrix / check_rows[0].sum()).numpy()
        for procedure in procedures:
            for epsilon in epsilons:
                index = fitted_indices(fit_risks, procedure, epsilon, delta, LOSS_BOUNDS[loss],
                                       int(fit_rows[0].sum()))
                risks = torch.from_numpy(check_risks[np.arange(repeats), index])
                rows.append({"loss": loss, "procedure": procedure, "epsilon": float(epsilon),
                             "mean_risk": risks.mean().item(),
                             "exceeded_share": (risks > epsilon).double().mean().item()})
    return rows


def half_masks(n, repeats, seed=0):
    """The halves of ``half_splits`` as 0/1 masks, float64 [R, N] each: mask @ losses sums a
    half's losses for every repeat at once (exact for 0/1 losses: sums of integers)."""
    fit_rows = torch.zeros(repeats, n, dtype=torch.float64)
    check_rows = torch.zeros(repeats, n, dtype=torch.float64)
    for r, (fit, check) in enumerate(half_splits(n, repeats, seed)):
        fit_rows[r, fit], check_rows[r, check] = 1.0, 1.0
    return fit_rows, check_rows


def fitted_indices(risks, procedure, epsilon, delta, bound, n):
    """Grid index of λ̂ for every repeat [R], from the empirical risks R̂ [R, G] of n images:
    the scan of ``risk.last_passing`` (the last λ before the first failure, 0 if λ = 1 fails)
    on every row at once."""
    return last_passing(passes(procedure, risks, n, epsilon=epsilon, delta=delta, bound=bound))
