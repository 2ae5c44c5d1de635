"""Anytime quality of an early-exit model from its per-exit probabilities [N, L, C] on the
test split (nothing is fitted): conditional monotonicity (Jazbec et al., "Towards Anytime
Classification in Early-Exit Architectures by Enforcing Conditional Monotonicity", NeurIPS
2023), correctness that is lost at a later exit, failure prediction (AUROC) and calibration
(ECE) per exit.
"""
import torch
from scipy.stats import rankdata

from bench.evaluate.calibration import expected_calibration_error
from bench.evaluate.exit_probs import check_probs, confidences, predictions

DEFAULT_TAUS = (0.01, 0.05, 0.1, 0.2, 0.25, 0.33, 0.5)


def largest_drop(q):
    """max over i < j of q_i - q_j, per image [N] (0 with a single exit): how far the
    probability of the true class q [N, L] ever falls at a later exit."""
    if q.shape[1] < 2:
        return torch.zeros(q.shape[0], dtype=q.dtype)
    best_before = q.cummax(dim=1).values[:, :-1]  # max_{i <= j-1} q_i, for j = 1 .. L-1
    return (best_before - q[:, 1:]).max(dim=1).values.clamp(min=0)


def check_taus(taus):
    for tau in taus:
        if not tau >= 0:
            raise ValueError(f"taus must be tolerances >= 0, got {tau!r}")


def monotonicity(probs, labels, taus=DEFAULT_TAUS):
    """{τ: share of images that violate}: image n violates at τ if some i < j has
    q_j - q_i < -τ, with q_l = p[n, l, y_n]."""
    probs, labels = check_probs(probs, labels, "test")
    check_taus(taus)
    q = probs[torch.arange(len(labels)), :, labels]  # [N, L]
    drop = largest_drop(q)
    return {float(tau): (drop > tau).double().mean().item() for tau in taus}


def correctness_decreases(probs, labels):
    """Share of images correct at some exit i and wrong at a later exit j > i."""
    probs, labels = check_probs(probs, labels, "test")
    correct = predictions(probs) == labels[:, None]  # [N, L]
    correct_before = correct.cummax(dim=1).values[:, :-1]  # correct at some i <= j-1
    return (correct_before & ~correct[:, 1:]).any(dim=1).double().mean().item()


def auroc(scores, positive):
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney
    U / (n_pos n_neg), from average ranks); None when either class is absent."""
    positive = torch.as_tensor(positive, dtype=torch.bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(torch.as_tensor(scores, dtype=torch.float64).numpy())  # 1-based, ties averaged
    u = ranks[positive.numpy()].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def failure_auroc(probs, labels, confidence=None):
    """Per exit, the AUROC of the confidence c[:, l] for telling correct predictions
    (positive) from wrong ones."""
    probs, labels = check_probs(probs, labels, "test")
    c = confidences(probs, confidence, "test")
    correct = predictions(probs) == labels[:, None]
    return [auroc(c[:, l], correct[:, l]) for l in range(probs.shape[1])]


def exit_ece(probs, labels):
    """Per exit, ECE in PERCENT with 15 equal-width bins on the max probability
    (bench.evaluate.calibration; it takes logits [L, N, C], and log p gives back p)."""
    probs, labels = check_probs(probs, labels, "test")
    return expected_calibration_error(probs.transpose(0, 1).log(), labels, n_bins=15)
