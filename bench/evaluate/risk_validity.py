"""Validity diagnostic of the risk-controlled thresholds, on the held-out split alone.

R times (seeded) the held-out images are split at random into two halves; λ̂ is fitted on the
first half and its risk measured on the second. Per loss, procedure and ε: the mean of those
risks (crc promises E[R(λ̂)] <= ε) and the share of repeats whose risk exceeds ε (ucb and ltt
promise at most δ), each up to the Monte Carlo error of R repeats and the finite second half.
The test split is never read.
"""
import torch

from bench.evaluate.exit_probs import check_heldout_size, check_probs, confidences
from bench.evaluate.risk import (DEFAULT_DELTA, DEFAULT_EPSILONS, DEFAULT_GRID, LOSS_BOUNDS,
                                 PROCEDURES, check_options, fit_index, lambda_grid, loss_matrix)

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
    splits = list(half_splits(len(labels), repeats, seed))  # the same halves for every row
    rows = []
    for loss in losses:
        matrix = loss_matrix(probs, labels, c, loss, lambdas)  # [N, G], computed once per loss
        for procedure in procedures:
            for epsilon in epsilons:
                risks = torch.tensor([_repeat(matrix[fit], matrix[check], procedure, epsilon,
                                              delta, LOSS_BOUNDS[loss])
                                      for fit, check in splits], dtype=torch.float64)
                rows.append({"loss": loss, "procedure": procedure, "epsilon": float(epsilon),
                             "mean_risk": risks.mean().item(),
                             "exceeded_share": (risks > epsilon).double().mean().item()})
    return rows


def _repeat(fit_losses, check_losses, procedure, epsilon, delta, bound):
    """Risk on the second half of the λ̂ fitted on the first."""
    index, _, _ = fit_index(fit_losses, procedure=procedure, epsilon=epsilon, delta=delta,
                            bound=bound)
    return check_losses[:, index].mean().item()
