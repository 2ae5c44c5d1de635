"""Zero Time Waste (Wolczyk et al., NeurIPS 2021): geometric ensembles of the exits so far.

For every exit n its own parameters w_n in R^n and b_n in R^C
(gmum/Zero-Time-Waste:ztw_cv_original/architectures/weighted_avg_model.py:21-41):

    z_n = (1/n) sum_{i<=n} exp(w_{n,i}) log_softmax(f_i) + b_n

so softmax(z_n) ∝ exp(b_n) prod_{i<=n} p_i^(exp(w_{n,i})/n), a weighted geometric mean of the
exits' probabilities. They are fitted after training, with the network frozen, on stored
logits: CE(z_n, y), Adam lr 5e-4, no weight decay, batch 512, 501 epochs on CIFAR
(train_networks.py:197-202, 332; model_funcs.py:800-826).

Cost: the weighted sum is computed as a matmul, so fvcore counts its n C multiply-adds per
exit; the bias add, the exponentials and the log-softmax are elementwise and, like a linear
layer's bias, not counted (:func:`ensemble_macs`).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REFERENCE_EPOCHS_CIFAR = 501  # train_networks.py:332 (ImageNet: 10, model_funcs.py:794-795)


class GeometricEnsembles(nn.Module):
    """The ensembles of exits 1..N; ``forward([f_1..f_k])`` -> [z_1..z_k] for any k <= N."""

    def __init__(self, num_exits: int, num_classes: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        # w_n ~ N(0, 0.01^2) drawn for n = 1..N in turn, b_n = 0 (weighted_avg_model.py:21-23)
        self.weights = nn.ParameterList(
            nn.Parameter(0.01 * torch.randn(n, generator=generator))
            for n in range(1, num_exits + 1))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(num_classes))
                                       for _ in range(num_exits))

    def mixing(self, n: int) -> Tensor:
        """exp(w_n) / n for the 0-based exit ``n``: [n + 1]."""
        return self.weights[n].exp() / (n + 1)

    def exit_logits(self, n: int, log_probs: Tensor) -> Tensor:
        """z_n for the 0-based exit ``n`` from log_softmax(f_i) stacked as [B, >= n+1, C]."""
        lp = log_probs[:, : n + 1].transpose(1, 2)  # [B, C, n+1]
        return (lp @ self.mixing(n).unsqueeze(1)).squeeze(2) + self.biases[n]  # [B, C]

    def forward(self, outs: Sequence[Tensor]) -> list[Tensor]:
        if len(outs) > len(self.weights):
            raise ValueError(f"{len(self.weights)} ensembles cannot combine {len(outs)} exits")
        log_probs = torch.stack([F.log_softmax(f, dim=1) for f in outs], dim=1)  # [B, k, C]
        return [self.exit_logits(n, log_probs) for n in range(len(outs))]

    def all_exit_logits(self, log_probs: Tensor) -> Tensor:
        """z_1..z_N at once from [B, N, C] log-probabilities -> [B, N, C] (for fitting).

        Exit n's mixing vector is zero-padded to N, so row n of the [N, N] matrix only
        touches w_n: the gradient of sum_n CE(z_n, y) w.r.t. w_n is that of CE(z_n, y).
        """
        N = len(self.weights)
        mix = torch.stack([F.pad(self.mixing(n), (0, N - n - 1)) for n in range(N)])  # [N, N]
        bias = torch.stack(list(self.biases))  # [N, C]
        return torch.einsum("ni,bic->bnc", mix, log_probs) + bias


def ensemble_macs(num_exits: int, num_classes: int) -> list[int]:
    """Multiply-adds of exit n's ensemble for one image: n C (not cumulative). Reaching exit
    n at inference runs ensembles 1..n, so its cumulative extra cost is C n (n + 1) / 2.
    The C bias adds, the n exponentials (fixed once fitted) and the log-softmax of each exit
    are elementwise: not counted, the convention of the harness's fvcore counts."""
    return [n * num_classes for n in range(1, num_exits + 1)]


def fit_ensembles(logits: Tensor, targets: Tensor, epochs: int, batch_size: int = 512,
                  lr: float = 5e-4, seed: int = 0) -> GeometricEnsembles:
    """Fit every exit's ensemble on stored logits [N, M, C] with labels [M]; deterministic
    given ``seed``.

    Each exit's ensemble is an independent model with its own loss CE(z_n, y), as in the
    reference (one process per exit). They are stepped together on the same shuffled
    mini-batches; as no parameter is shared and Adam works per parameter, exit n's fit is
    exactly the fit it would get alone on that batch order. Init and batch order come from
    two generators seeded with ``seed``, so exit n's fit does not depend on N.
    """
    N, M, C = _check_fit_inputs(logits, targets, epochs, batch_size)
    ensembles = GeometricEnsembles(N, C, torch.Generator().manual_seed(seed)).to(logits)
    log_probs = F.log_softmax(logits.detach(), dim=2).transpose(0, 1)  # [M, N, C]
    targets = targets.to(logits.device)
    order = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(ensembles.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(epochs):
        for idx in torch.randperm(M, generator=order).to(logits.device).split(batch_size):
            z = ensembles.all_exit_logits(log_probs[idx])  # [B, N, C]
            y = targets[idx].unsqueeze(1).expand(-1, N)  # [B, N]
            loss = F.cross_entropy(z.transpose(1, 2), y, reduction="none").mean(0).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return ensembles


def _check_fit_inputs(logits: Tensor, targets: Tensor, epochs: int, batch_size: int):
    if logits.dim() != 3:
        raise ValueError(f"ensemble logits must be [exits, samples, classes], got shape "
                         f"{tuple(logits.shape)}")
    N, M, C = logits.shape
    if tuple(targets.shape) != (M,):
        raise ValueError(f"ensemble targets must have shape ({M},) to match the logits, got "
                         f"{tuple(targets.shape)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"ensemble fit needs epochs >= 1 and batch_size >= 1, got "
                         f"epochs={epochs}, batch_size={batch_size}")
    return N, M, C
