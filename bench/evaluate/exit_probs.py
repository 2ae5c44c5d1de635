"""Per-exit probabilities, as the trustworthy-exit metrics take them (docs/trustworthy-exits.md).

``probs`` is [N, L, C]: image n's probability vector at exit l (after the method's own
combination), ``labels`` int [N], ``confidence`` [N, L] the exit rule's confidence in [0, 1]
(default: the max probability). Everything is computed in float64.

Note the layout: image first, unlike the [exits, images, classes] logits of the budgeted
evaluation (bench.evaluate.budgets).
"""
import torch

MIN_HELDOUT = 20  # fewer held-out images than this cannot calibrate a threshold or a set


def check_probs(probs, labels, split="held-out"):
    """(probs float64 [N, L, C], labels int64 [N]), or a ValueError naming what is wrong."""
    probs, labels = torch.as_tensor(probs), torch.as_tensor(labels)
    if probs.dim() != 3 or min(probs.shape) == 0:
        raise ValueError(f"{split} probs must be a non-empty [N, L, C] tensor, "
                         f"got shape {tuple(probs.shape)}")
    if labels.shape != probs.shape[:1] or labels.is_floating_point():
        raise ValueError(f"{split} labels must be an integer tensor [N] with N = "
                         f"{probs.shape[0]}, got {labels.dtype} of shape {tuple(labels.shape)}")
    probs, labels = probs.double(), labels.long()
    if not torch.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"{split} probs must be probabilities in [0, 1]")
    if labels.min() < 0 or labels.max() >= probs.shape[2]:
        raise ValueError(f"{split} labels must be class indices in [0, {probs.shape[2] - 1}], "
                         f"got values in [{labels.min().item()}, {labels.max().item()}]")
    return probs, labels


def check_heldout_size(n, what="the held-out split"):
    if n < MIN_HELDOUT:
        raise ValueError(f"{what} has {n} images; calibrating needs at least {MIN_HELDOUT}")


def confidences(probs, confidence=None, split="held-out"):
    """The exit rule's confidence c [N, L] float64: given, or max_y p[n, l, y]."""
    if confidence is None:
        return probs.max(dim=-1).values
    c = torch.as_tensor(confidence).double()
    if c.shape != probs.shape[:2]:
        raise ValueError(f"{split} confidence must be [N, L] = {list(probs.shape[:2])}, "
                         f"got {list(c.shape)}")
    if not torch.isfinite(c).all() or c.min() < 0 or c.max() > 1:
        raise ValueError(f"{split} confidence must lie in [0, 1] (the exit rule's confidence)")
    return c


def predictions(probs):
    """yhat [N, L]: argmax_y p[n, l, y] (the first maximum on ties)."""
    return probs.argmax(dim=-1)


def check_exit_mmacs(exit_mmacs, n_exits):
    """Cumulative cost of reaching each exit, float64 [L]."""
    mmacs = torch.as_tensor(exit_mmacs, dtype=torch.float64)
    if mmacs.shape != (n_exits,):
        raise ValueError(f"exit_mmacs must have one cost per exit ({n_exits}), "
                         f"got {mmacs.tolist()}")
    if (mmacs.diff() < 0).any():
        raise ValueError(f"exit_mmacs must be cumulative (non-decreasing), got {mmacs.tolist()}")
    return mmacs
