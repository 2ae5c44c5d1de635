"""Split-conformal prediction sets at every exit, and their nested variant (Angelopoulos &
Bates, "A gentle introduction to conformal prediction", 2021; JEI-DNN, ICLR 2024).

Score s = 1 - p[n, l, y_n]. q̂_l, fitted on the HELD-OUT split, is the ceil((n + 1)(1 - α))-th
smallest held-out score of exit l; the set C_l(x) = {y : 1 - p[l, y] <= q̂_l} then contains
the true class with probability >= 1 - α for an exchangeable test image. The nested set
C̃_l = C_1 ∩ ... ∩ C_l never grows with l (and may be empty).
"""
import math

import torch

from bench.evaluate.exit_probs import check_heldout_size, check_probs

DEFAULT_ALPHAS = (0.05, 0.1)


def check_alpha(alpha):
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (the miscoverage level), got {alpha!r}")


def scores(probs, labels):
    """s = 1 - p[n, l, y_n], float64 [N, L]."""
    return 1.0 - probs[torch.arange(len(labels)), :, labels]


def quantiles(heldout_probs, heldout_labels, alpha):
    """q̂_l per exit, float64 [L], from the held-out split only."""
    check_alpha(alpha)
    probs, labels = check_probs(heldout_probs, heldout_labels)
    n = len(labels)
    check_heldout_size(n)
    # rank k = ceil((n + 1)(1 - α)), float noise (62.99999999999999) rounded away first
    k = math.ceil(round((n + 1) * (1 - alpha), 9))
    if k > n:  # not enough images for this α: the set is every class (every score is <= 1)
        return torch.ones(probs.shape[1], dtype=torch.float64)
    return scores(probs, labels).sort(dim=0).values[k - 1]  # k-th smallest, per exit


def prediction_sets(probs, qhat):
    """Membership [N, L, C] bool: y is in C_l(x_n) iff 1 - p[n, l, y] <= q̂_l."""
    return (1.0 - probs) <= qhat[None, :, None]


def nested(sets):
    """C̃_l = C_1 ∩ ... ∩ C_l, [N, L, C] bool."""
    return sets.byte().cummin(dim=1).values.bool()


def set_quality(sets, labels):
    """Per exit: coverage (share of images whose class is in the set), mean set size and the
    share of empty sets, each a list over exits."""
    covered = sets[torch.arange(len(labels)), :, labels]  # [N, L]
    size = sets.sum(dim=-1).double()  # [N, L]
    return {"coverage": covered.double().mean(dim=0).tolist(),
            "mean_size": size.mean(dim=0).tolist(),
            "empty_share": (size == 0).double().mean(dim=0).tolist()}
