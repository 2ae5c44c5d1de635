"""Risk-controlled early-exit thresholds (Jazbec et al., "Fast yet Safe: Early-Exiting with
Risk Control", NeurIPS 2024), fitted on the held-out split and applied unchanged elsewhere.

Exit rule at threshold λ: image n leaves at the first exit l < L with c[n, l] > λ (strictly),
else at the last exit L. A loss compares the prediction where the image leaves with the full
model's (exit L); R̂(λ) is its mean over the n held-out images. The grid λ_k = 1 - k/(G - 1)
is scanned from λ = 1 downward while the procedure's test passes; λ̂ is the last λ that
passed (λ = 1 if it fails at once: there nobody leaves early and the risk is 0).

The procedures, each a test at λ and what it guarantees for the risk R on new images:
- crc, conformal risk control (Angelopoulos et al., ICLR 2024):
  (n R̂ + B) / (n + 1) <= ε; E[R(λ̂)] <= ε.
- ucb, Hoeffding upper confidence bound: R̂ + B sqrt(ln(1/δ) / (2n)) <= ε;
  P(R(λ̂) <= ε) >= 1 - δ.
- ltt, Learn-then-Test (Angelopoulos et al., arXiv 2110.01052) with fixed-sequence testing:
  p_HB(λ) <= δ (``hb_p_value``); P(R(λ̂) <= ε) >= 1 - δ.
B is the loss's bound (LOSS_BOUNDS), n the number of held-out images.

Stopping at the first failure, not taking the lowest passing λ anywhere on the grid, is what
keeps the guarantee when R(λ) is not monotone in λ (fixed-sequence testing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import xlogy
from scipy.stats import binom

from bench.evaluate.exit_probs import (check_exit_mmacs, check_heldout_size, check_probs,
                                       confidences, predictions)

LOSS_BOUNDS = {"consistency": 1.0, "accuracy_gap": 1.0, "brier_gap": 2.0}  # loss in [0, B]
PROCEDURES = ("crc", "ucb", "ltt")
DEFAULT_EPSILONS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2)
DEFAULT_DELTA = 0.1
DEFAULT_GRID = 101  # λ = 1.00, 0.99, ..., 0.00


def check_options(*, losses=(), procedures=(), epsilons=(), delta=DEFAULT_DELTA,
                  grid=DEFAULT_GRID):
    """ValueError naming the argument and what was expected, before anything is computed."""
    for loss in losses:
        if loss not in LOSS_BOUNDS:
            raise ValueError(f"loss must be one of {sorted(LOSS_BOUNDS)}, got {loss!r}")
    for procedure in procedures:
        if procedure not in PROCEDURES:
            raise ValueError(f"procedure must be one of {list(PROCEDURES)}, got {procedure!r}")
    for epsilon in epsilons:
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2 (number of λ values), got {grid!r}")


def lambda_grid(grid=DEFAULT_GRID):
    """λ_k = 1 - k / (G - 1), k = 0 .. G - 1: float64 [G], from 1 down to 0.

    Computed as (G - 1 - k) / (G - 1), one rounding: 0.93 rather than 1 - 0.07."""
    return torch.arange(grid - 1, -1, -1, dtype=torch.float64) / (grid - 1)


def exits_at(confidence, lambdas):
    """0-based exit [N, G] of every image at every λ: the first l < L with c[n, l] > λ, else L.

    Some l <= j has c[n, l] > λ iff the running max m[n, j] = max_{l <= j} c[n, l] > λ. The
    running max never falls, so the exits an image passes by (m <= λ) come first and the exit
    it leaves at is their count; leaving out the last exit caps it there.
    """
    running = confidence[:, :-1].cummax(dim=1).values  # m [N, L-1]
    return (running[:, :, None] <= lambdas[None, None, :]).sum(dim=1)  # [N, G], int64


def exit_losses(probs, labels, loss):
    """Loss [N, L] float64 of image n if it leaves at exit l (the table of the module doc)."""
    yhat = predictions(probs)  # [N, L]
    if loss == "consistency":  # 1[yhat_l != yhat_L], needs no label
        return (yhat != yhat[:, -1:]).double()
    if loss == "accuracy_gap":  # max(0, 1[yhat_l != y] - 1[yhat_L != y])
        wrong = (yhat != labels[:, None]).double()
        return (wrong - wrong[:, -1:]).clamp(min=0)
    # brier_gap: max(0, ||p_l - onehot(y)||^2 - ||p_L - onehot(y)||^2), in [0, 2]
    onehot = torch.nn.functional.one_hot(labels, probs.shape[2]).double()[:, None]
    brier = ((probs - onehot) ** 2).sum(dim=-1)  # [N, L]
    return (brier - brier[:, -1:]).clamp(min=0)


def loss_matrix(probs, labels, confidence, loss, lambdas):
    """Loss [N, G] of every image at every λ of the grid."""
    return exit_losses(probs, labels, loss).gather(1, exits_at(confidence, lambdas))


def hb_p_value(risk, n, epsilon, bound=1.0):
    """Hoeffding-Bentkus p-value of H0: R > ε (Bates, Angelopoulos et al. 2021), per risk.

    With losses scaled to [0, 1] (r = R̂ / B, e = ε / B):
    p_HB = min(exp(-n h(min(r, e), e)), e_const * P[Binomial(n, e) <= ceil(n r)]),
    h(a, b) = a ln(a / b) + (1 - a) ln((1 - a) / (1 - b)), 0 ln 0 = 0.
    """
    r, e = np.asarray(risk, dtype=np.float64) / bound, epsilon / bound
    a = np.minimum(r, e)
    h = xlogy(a, a / e) + xlogy(1 - a, (1 - a) / (1 - e))  # xlogy(0, .) = 0
    # n r is a count for 0/1 losses: round away float noise (7.000000000000001) before the ceiling
    k = np.ceil(np.round(n * r, 9))
    return np.minimum(np.exp(-n * h), math.e * binom.cdf(k, n, e))


def passes(procedure, risks, n, *, epsilon, delta, bound):
    """The procedure's test at every λ: bool numpy [G] from the empirical risks R̂ [G]."""
    risks = np.asarray(risks, dtype=np.float64)
    if procedure == "crc":
        return (n * risks + bound) / (n + 1) <= epsilon
    if procedure == "ucb":
        return risks + bound * math.sqrt(math.log(1 / delta) / (2 * n)) <= epsilon
    return hb_p_value(risks, n, epsilon, bound) <= delta  # ltt


def last_passing(passed):
    """Grid index of λ̂: walk down from λ = 1 while the test passes; 0 if it fails at once.
    ``passed`` [G] gives an int, [R, G] one index per row (the validity diagnostic)."""
    failed = ~np.asarray(passed, dtype=bool)
    first_failure = np.where(failed.any(axis=-1), failed.argmax(axis=-1), failed.shape[-1])
    index = np.maximum(first_failure - 1, 0)
    return int(index) if index.ndim == 0 else index


def fit_index(losses, *, procedure, epsilon, delta, bound):
    """(grid index of λ̂, R̂ [G], tests [G]) from a held-out loss matrix [n, G]."""
    n = losses.shape[0]
    risks = losses.mean(dim=0).numpy()
    passed = passes(procedure, risks, n, epsilon=epsilon, delta=delta, bound=bound)
    return last_passing(passed), risks, passed


@dataclass(frozen=True)
class RiskControl:
    """A threshold fitted on the held-out split, and how it was found."""
    loss: str
    procedure: str
    epsilon: float
    delta: float
    threshold: float  # λ̂
    exits: torch.Tensor  # 0-based exit of every held-out image at λ̂, int64 [N]
    lambdas: torch.Tensor  # the grid, float64 [G], from 1 down
    risks: torch.Tensor  # R̂(λ) on the held-out split, float64 [G]
    passed: torch.Tensor  # the procedure's test at every λ, bool [G]
    index: int  # grid index of λ̂

    @property
    def accepted(self):
        """The λs the scan accepted (from 1 down to λ̂; empty if λ = 1 failed)."""
        return self.lambdas[:self.index + 1] if self.passed[0] else self.lambdas[:0]


def risk_control(probs, labels, *, loss, epsilon, delta=DEFAULT_DELTA, procedure="crc",
                 grid=DEFAULT_GRID, confidence=None) -> RiskControl:
    """Fit λ̂ on the HELD-OUT split: probs [N, L, C], labels [N], confidence [N, L]."""
    check_options(losses=[loss], procedures=[procedure], epsilons=[epsilon], delta=delta,
                  grid=grid)
    probs, labels = check_probs(probs, labels)
    check_heldout_size(len(labels))
    c = confidences(probs, confidence)
    lambdas = lambda_grid(grid)
    exits = exits_at(c, lambdas)  # [N, G]
    losses = exit_losses(probs, labels, loss).gather(1, exits)  # [N, G]
    index, risks, passed = fit_index(losses, procedure=procedure, epsilon=epsilon, delta=delta,
                                     bound=LOSS_BOUNDS[loss])
    return RiskControl(loss=loss, procedure=procedure, epsilon=float(epsilon),
                       delta=float(delta), threshold=float(lambdas[index]),
                       exits=exits[:, index], lambdas=lambdas, risks=torch.from_numpy(risks),
                       passed=torch.from_numpy(passed), index=index)


def measure_threshold(fit: RiskControl, probs, labels, *, exit_mmacs, confidence=None,
                      split="test"):
    """A fitted λ̂ applied unchanged to another split: its risk, top-1 (percent), mean cost
    per image (the exit's cumulative MMACs) and the share of images leaving at each exit."""
    probs, labels = check_probs(probs, labels, split)
    mmacs = check_exit_mmacs(exit_mmacs, probs.shape[1])
    c = confidences(probs, confidence, split)
    exits = exits_at(c, torch.tensor([fit.threshold], dtype=torch.float64))[:, 0]  # [N]
    rows = torch.arange(len(labels))
    risk = exit_losses(probs, labels, fit.loss)[rows, exits].mean().item()
    correct = predictions(probs)[rows, exits] == labels
    shares = torch.bincount(exits, minlength=probs.shape[1]).double() / len(labels)
    return {"risk": risk, "top1": 100.0 * correct.double().mean().item(),
            "mmacs": (shares @ mmacs).item(), "exit_shares": shares.tolist()}
