"""The exit rule and its thresholds, on scores from saved logits.

A sample leaves at the first exit n whose score s_n (higher = more confident; the max
softmax of F_n by default, any criterion of ``bench.evaluate.criteria``) reaches the
threshold T_n; the last exit takes everything left. A threshold of +inf lets nobody leave
at its exit, -inf everybody.

Thresholds are fitted as in MSDNet (Huang et al. 2018) and the BoostNet reference
(``adaptive_inference.py``): a geometric prior P_k ∝ q^k (k = 1..N) fixes the share of
held-out samples that leave at exit k, and the thresholds are fitted exit by exit on the
held-out split only, then applied unchanged to the test split. Differences from the
reference, on purpose:

- counts per exit are ``round(M * cumsum(P))`` differences, so they sum to M and a prior that
  puts all its mass on exit 1 sends every sample there (the reference floors each share and
  leaves the remainder to the last exit);
- an exit whose count is 0 gets threshold +inf (nobody leaves); an exit whose count is every
  remaining sample, and the last exit, get -inf (everyone left leaves), where the reference
  uses the lowest remaining held-out confidence and so lets a test sample less confident than
  every held-out one go on. Both give the same held-out exits.

As in the reference a sample leaves at the first exit whose score is >= its threshold, so
tied scores on the held-out split can make more than the intended count leave.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from bench.evaluate.criteria import MAX_SOFTMAX_BOUNDS, confidences
from bench.evaluate.inputs import as_targets


def exit_prior(q: float, n_exits: int) -> np.ndarray:
    """MSDNet's geometric prior P_k ∝ q^k, k = 1..N, normalized (in log space: no overflow)."""
    logp = np.arange(1, n_exits + 1) * math.log(q)
    p = np.exp(logp - logp.max())
    return p / p.sum()


def exit_counts(prior, m: int) -> np.ndarray:
    """Samples leaving at each exit: differences of the rounded cumulative shares (sum = m)."""
    cum = np.rint(np.cumsum(prior) * m).astype(np.int64)
    cum[-1] = m
    return np.diff(cum, prepend=0)


def exits_from_scores(scores: np.ndarray, thresholds) -> np.ndarray:
    """0-based exit of every sample, [M]: the first n with s_n >= T_n, else the last exit.
    ``scores`` [N, M]; ``thresholds`` N values (the last one is not used)."""
    passed = scores >= np.asarray(thresholds, dtype=scores.dtype)[:, None]  # [N, M]
    passed[-1] = True  # whatever passes no threshold leaves at the last exit
    return passed.argmax(axis=0)  # first exit passed


def assign_exits(preds, thresholds) -> torch.Tensor:
    """0-based exit each sample leaves at, int64 [M]: the first exit n with max softmax
    F_n >= T_n (``preds`` [N_exits, M, C])."""
    scores = confidences(preds)[0].numpy()
    return torch.from_numpy(exits_from_scores(scores, thresholds)).long()


def global_thresholds(tau: float, n_exits: int) -> list[float]:
    """One threshold tau for exits 1..N-1; the last exit takes everything left."""
    return [float(tau)] * (n_exits - 1) + [-math.inf]


def forced_exit(k: int, n_exits: int) -> list[float]:
    """Thresholds that send every sample to exit k (0-based), whatever its score."""
    return [math.inf] * k + [-math.inf] * (n_exits - k)


def finite_thresholds(values, bounds=MAX_SOFTMAX_BOUNDS) -> list[float]:
    """Thresholds as finite JSON numbers with the same effect on any split: +inf (nobody
    leaves) becomes high + 1 and -inf (everybody leaves) low - 1, where every score of the
    criterion lies in ``bounds`` = [low, high] (the criterion's ``bounds``; max softmax's
    [0, 1] by default, so 2.0 and -1.0 as metrics.json has always written them). The one
    conversion: metrics.json, latency.json and exported files all hold these numbers."""
    low, high = bounds
    return [high + 1.0 if v == math.inf else low - 1.0 if v == -math.inf else float(v)
            for v in values]


# The threshold fit and the budget search run in numpy: thousands of tiny ops, where torch's
# thread pool only adds overhead.
class ScoredSplit:
    """One split under an exit criterion: scores s [N, M] (higher = more confident; a sample
    leaves at the first exit n with s_n >= T_n), predictions [N, M] and targets [M].

    The per-exit ranking of the scores is computed once; the threshold fit reads only this
    object, so a split built from held-out data never sees test data.
    """

    def __init__(self, scores, pred, targets):
        self.scores = np.asarray(scores, dtype=np.float64)  # [N, M]
        self.pred = np.asarray(pred)
        self.targets = np.asarray(targets)
        if self.scores.ndim != 2 or self.pred.shape != self.scores.shape:
            raise ValueError(f"scores and predictions must both be [N_exits, M], got "
                             f"{self.scores.shape} and {self.pred.shape}")
        if self.targets.shape != self.scores.shape[1:]:
            raise ValueError(f"targets must be [M] with M = {self.scores.shape[1]}, "
                             f"got shape {self.targets.shape}")
        self.order = np.argsort(-self.scores, axis=1, kind="stable")  # most confident first
        self.n, self.m = self.scores.shape

    @classmethod
    def from_logits(cls, preds, targets) -> ScoredSplit:
        """The default criterion's split: max softmax of F_n as the score, argmax as the
        prediction (``preds`` [N_exits, M, C])."""
        conf, pred = confidences(preds)
        return cls(conf.numpy(), pred.numpy(), as_targets(targets).numpy())

    def thresholds(self, q: float) -> list[float]:
        """MSDNet threshold fit: at exit k, the counts[k]-th highest remaining score."""
        return self.fit(q)[0]

    def fit(self, q: float) -> tuple[list[float], np.ndarray]:
        """(thresholds, samples of this split leaving at each exit under them): with tied
        scores more samples than the prior's count can pass a threshold."""
        counts = exit_counts(exit_prior(q, self.n), self.m)
        left = np.ones(self.m, dtype=bool)  # not yet exited
        out, leaving = [], np.zeros(self.n, dtype=np.int64)
        for k in range(self.n - 1):
            ranked = self.order[k][left[self.order[k]]]  # remaining samples, most confident first
            if counts[k] == 0 or len(ranked) == 0:
                t = math.inf
            elif counts[k] >= len(ranked):
                t = -math.inf  # everything left leaves here, on any split
            else:
                t = float(self.scores[k, ranked[counts[k] - 1]])
            out.append(t)
            stay = self.scores[k] < t  # those with s >= t leave here
            leaving[k] = len(ranked) - np.count_nonzero(left & stay)
            left &= stay
        leaving[-1] = np.count_nonzero(left)
        return out + [-math.inf], leaving  # the last exit takes everything left

    def exits(self, thresholds) -> np.ndarray:
        """0-based exit of every sample under fixed thresholds, [M]."""
        return exits_from_scores(self.scores, thresholds)

    def correct(self, thresholds) -> np.ndarray:
        """Whether each sample's prediction at the exit it leaves at is right, bool [M]."""
        return self.pred[self.exits(thresholds), np.arange(self.m)] == self.targets

    def evaluate(self, thresholds, flops) -> dict:
        """Accuracy (percent), realized mean cost and exit shares under fixed thresholds."""
        exits = self.exits(thresholds)
        correct = self.pred[exits, np.arange(self.m)] == self.targets
        shares = np.bincount(exits, minlength=self.n) / self.m
        return {"accuracy": 100.0 * float(correct.mean()), "mmacs": float(shares @ flops),
                "exit_shares": shares.tolist()}
