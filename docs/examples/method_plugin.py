"""A worked example of a new training method, plugged in without editing the harness.

``mean_ensemble``: exit n predicts with a discounted running mean of the heads so far,

    F_n = sum_{k<=n} decay^(n-k) f_k / sum_{k<=n} decay^(n-k)

(decay 1: the plain mean of f_1..f_n; decay 0: f_n alone, i.e. joint training), and each
exit's loss sees what it predicts with, CE(F_n, y), with the earlier heads' part detached
so that exit n's loss trains head n only (like BoostNet's stop-gradient on F_{n-1}).

Used by docs/examples/add-a-method.yaml; docs/extending.md, "Add a method", walks through
it.
"""
from __future__ import annotations

from methods import NUMBER, Method, Option, Range, register


@register("mean_ensemble")
class MeanEnsemble(Method):
    # Every option becomes an attribute (self.decay); suites set it under options:, checked
    # against its kind and bounds. Method.OPTIONS brings loss_weights.
    OPTIONS = Method.OPTIONS + (
        Option("decay", NUMBER, 1.0, "weight of head k in F_n is decay^(n-k)",
               low=0.0, high=1.0),
    )
    # Optional: where `decay: tuned` searches (bench tune, on the held-out split only).
    SEARCH_SPACE = {"decay": Range(0.1, 1.0)}

    def _weights(self, n: int) -> list[float]:
        """decay^(n-k) for k = 0..n (0-based), normalized to sum to 1."""
        w = [self.decay ** (n - k) for k in range(n + 1)]
        return [v / sum(w) for v in w]

    def combine(self, outs):
        """F_1..F_N from the raw head logits f_1..f_N (what each exit predicts with)."""
        return [sum(w * f for w, f in zip(self._weights(n), outs[: n + 1]))
                for n in range(len(outs))]

    def train_logits(self, outs):
        """What exit n's loss sees: F_n with the earlier heads detached."""
        out = []
        for n in range(len(outs)):
            *earlier, own = self._weights(n)
            out.append(sum(w * f.detach() for w, f in zip(earlier, outs[:n])) + own * outs[n])
        return out
