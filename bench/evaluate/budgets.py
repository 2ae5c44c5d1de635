"""Anytime and budgeted metrics, computed from saved logits only (an evaluation never retrains).

Inputs everywhere: ``preds`` are F_n, what each exit predicts with (``method.combine``), as a
Tensor [N_exits, M, C] or a list of N tensors [M, C] (float16 is fine: computed in float32);
``targets`` int64 [M]; ``exit_flops`` the cumulative cost of reaching exit n (MMACs).

Budgeted batch classification follows MSDNet (Huang et al. 2018) and the BoostNet reference
(``adaptive_inference.py``): the confidence of exit n is the max softmax of F_n (any other
score matrix works the same way: ``ScoredSplit``; the criteria live in ``bench.evaluate.criteria``); a geometric
prior P_k ∝ q^k (k = 1..N) fixes the share of held-out samples that leave at exit k;
thresholds are fitted exit by exit on the held-out split only and applied unchanged to the
test split. Early exiting is simulated from the saved logits of every exit.

Differences from the reference, on purpose:
- counts per exit are ``round(M * cumsum(P))`` differences, so they sum to M and a prior that
  puts all its mass on exit 1 sends every sample there (the reference floors each share and
  leaves the remainder to the last exit);
- an exit whose count is 0 gets threshold +inf (nobody leaves); an exit whose count is every
  remaining sample, and the last exit, get -inf (everyone left leaves), where the reference
  uses the lowest remaining held-out confidence and so lets a test sample less confident than
  every held-out one go on. Both give the same held-out exits.
As in the reference a sample leaves at the first exit whose confidence is >= its threshold,
so tied confidences on the held-out split can make more than the intended count leave.
"""
import math

import numpy as np
import torch

DEFAULT_QS = [p / 20 for p in range(1, 40)]  # MSDNet / reference sweep: q = 0.05 .. 1.95


def _stack(preds):
    """[N_exits, M, C] float32 tensor from a tensor or a list of [M, C] tensors."""
    if isinstance(preds, (list, tuple)):
        preds = torch.stack([torch.as_tensor(p) for p in preds])
    preds = torch.as_tensor(preds)
    if preds.dim() != 3:
        raise ValueError(f"preds must be [N_exits, M, C], got shape {tuple(preds.shape)}")
    return preds.float()


def _targets(targets):
    return torch.as_tensor(targets).long()


def topk_accuracy(preds, targets, k):
    """Top-k accuracy (percent) of every exit; k larger than the class count counts as C."""
    preds, targets = _stack(preds), _targets(targets)
    top = preds.topk(min(k, preds.shape[-1]), dim=-1).indices  # [N, M, k]
    hit = (top == targets[None, :, None]).any(dim=-1)  # [N, M]
    # exact counts (no float32 rounding); NaN for an empty split
    return [100.0 * h.sum().item() / h.numel() if h.numel() else math.nan for h in hit]


def anytime_accuracy(preds, targets):
    """Top-1 accuracy (percent) of every exit on the whole split (MSDNet anytime prediction)."""
    return topk_accuracy(preds, targets, 1)


def confidences(preds):
    """(confidence, prediction), both [N, M]: max softmax of F_n and its argmax.

    In float64, one exit at a time: float32 rounds the max softmax of every sample with a
    logit margin above ~17 to exactly 1.0, and such ties blur the threshold fit.
    """
    preds = _stack(preds)
    top, pred = preds.max(dim=-1)
    return _max_softmax(preds, top), pred


def max_softmax(logits):
    """Max softmax [N, M] float64 of float32 or float64 logits [N, M, C] (-inf entries allowed,
    as long as every row has a finite maximum)."""
    logits = torch.as_tensor(logits)
    if logits.dtype != torch.float64:
        logits = logits.float()
    return _max_softmax(logits, logits.max(dim=-1).values)


def _max_softmax(preds, top):
    # max softmax = 1 / sum_j exp(z_j - z_max), one exit at a time in float64
    return torch.stack([1.0 / (p.double() - t.double()[:, None]).exp().sum(-1)
                        for p, t in zip(preds, top)])


def exit_prior(q, n_exits):
    """MSDNet's geometric prior P_k ∝ q^k, k = 1..N, normalized (in log space: no overflow)."""
    logp = np.arange(1, n_exits + 1) * math.log(q)
    p = np.exp(logp - logp.max())
    return p / p.sum()


def exit_counts(prior, m):
    """Samples leaving at each exit: differences of the rounded cumulative shares (sum = m)."""
    cum = np.rint(np.cumsum(prior) * m).astype(np.int64)
    cum[-1] = m
    return np.diff(cum, prepend=0)


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

    def thresholds(self, q):
        """MSDNet threshold fit: at exit k, the counts[k]-th highest remaining score."""
        return self._fit(q)[0]

    def _fit(self, q):
        """(thresholds, samples of this split leaving at each exit under them)."""
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

    def exits(self, thresholds):
        """0-based exit of every sample under fixed thresholds, [M]."""
        return _assign(self.scores, thresholds)

    def correct(self, thresholds):
        """Whether each sample's prediction at the exit it leaves at is right, bool [M]."""
        return self.pred[self.exits(thresholds), np.arange(self.m)] == self.targets

    def evaluate(self, thresholds, flops):
        """Accuracy (percent), realized mean cost and exit shares under fixed thresholds."""
        exits = self.exits(thresholds)
        correct = self.pred[exits, np.arange(self.m)] == self.targets
        shares = np.bincount(exits, minlength=self.n) / self.m
        return {"accuracy": 100.0 * float(correct.mean()), "mmacs": float(shares @ flops),
                "exit_shares": shares.tolist()}


class _Split(ScoredSplit):
    """The default criterion's split: max softmax of F_n as the score, argmax as prediction."""

    def __init__(self, preds, targets):
        conf, pred = confidences(preds)
        super().__init__(conf.numpy(), pred.numpy(), _targets(targets).numpy())


def _assign(conf, thresholds):
    passed = conf >= np.asarray(thresholds, dtype=conf.dtype)[:, None]  # [N, M]
    passed[-1] = True  # whatever passes no threshold leaves at the last exit
    return passed.argmax(axis=0)  # first exit passed


def assign_exits(preds, thresholds):
    """0-based exit each sample leaves at: the first exit n with max softmax F_n >= T_n."""
    return torch.from_numpy(_assign(confidences(preds)[0].numpy(), thresholds)).long()


def _check_flops(exit_flops, n):
    flops = [float(f) for f in exit_flops]
    if len(flops) != n:
        raise ValueError(f"exit_flops has {len(flops)} entries for {n} exits")
    if any(b < a for a, b in zip(flops, flops[1:])):
        raise ValueError(f"exit_flops must be cumulative (non-decreasing), got {flops}")
    return flops


def _check_budgets(budgets, flops):
    for b in budgets:
        if not flops[0] <= b <= flops[-1]:
            raise ValueError(f"budget {b} is outside the valid range [{flops[0]}, {flops[-1]}] "
                             "(cost of the first to the last exit)")


def budget_curve(val_preds, val_targets, test_preds, test_targets, exit_flops, qs=None):
    """MSDNet budgeted-batch sweep: one point per q (default 39 values 0.05..1.95).

    Thresholds come from the held-out split (val) alone; test accuracy and realized mean test
    cost are measured with them.
    """
    val, test = _Split(val_preds, val_targets), _Split(test_preds, test_targets)
    flops = _check_flops(exit_flops, val.n)
    points = []
    for q in DEFAULT_QS if qs is None else qs:
        thresholds = val.thresholds(q)
        points.append({"q": float(q), **test.evaluate(thresholds, flops), "thresholds": thresholds})
    return points


def _search(cost, budget, span, grid=64, tol=1e-12):
    """log q with the highest cost(log q) <= budget: grid scan, then bisect each crossing."""
    xs = np.linspace(-span, span, grid)
    cs = [cost(x) for x in xs]
    found = [(c, x) for x, c in zip(xs, cs) if c <= budget]
    for i in range(grid - 1):
        if cs[i] <= budget < cs[i + 1]:  # the cost crosses the budget in (xs[i], xs[i+1])
            lo, hi = xs[i], xs[i + 1]
            while hi - lo > tol:
                mid = 0.5 * (lo + hi)
                c = cost(mid)
                if c <= budget:
                    lo = mid
                    found.append((c, mid))
                else:
                    hi = mid
    return max(found, key=lambda cx: cx[0])[1]  # first of the highest costs <= budget


def solve_q(val, flops, budget):
    """The q whose held-out mean cost is closest to ``budget`` without exceeding it.

    The held-out cost is a step function of q (counts are integers): each step moves one sample
    one exit later, and it rises with q as the prior's mass moves to later exits, so no q hits
    a budget exactly in general. We scan log q on a grid whose ends send every sample to exit 1
    and to the last exit, bisect each grid bracket where the cost crosses the budget down to
    the jump, and keep the q with the highest cost <= budget: within one sample's worth,
    max_k (c_{k+1} - c_k) / M, below the budget. The search runs on the planned cost
    (counts @ flops / M, cheap); if tied held-out confidences make the realized cost of the
    fitted thresholds differ, it is redone on the realized cost on a dense grid: with ties
    that cost has larger steps and is not monotone in q, so the q found is the best of those
    evaluated, not a guaranteed optimum. Reads the held-out split only.
    """
    flops = np.asarray(flops, dtype=np.float64)
    budget = budget + 1e-9 * max(abs(flops[-1]), 1.0)  # float slack in the comparisons
    span = math.log(4 * val.m) + 1  # q = e^-span: round(M * P_1) = M; e^span: round(M * P_N) = M
    planned = lambda x: float(exit_counts(exit_prior(math.exp(x), val.n), val.m) @ flops) / val.m
    # = val.evaluate(val.thresholds(q), flops)["mmacs"], from the counts the fit already has
    realized = lambda x: float((val._fit(math.exp(x))[1] / val.m) @ flops)
    x = _search(planned, budget, span)
    if not math.isclose(realized(x), planned(x), rel_tol=1e-9):
        x = _search(realized, budget, span, grid=1024)  # ties: cost no longer monotone in q
    return math.exp(x)


def global_thresholds(tau, n_exits):
    """One threshold tau for exits 1..N-1; the last exit takes everything left."""
    return [float(tau)] * (n_exits - 1) + [-math.inf]


def solve_global(val, flops, budget):
    """The global threshold tau (DeeBERT / ZTW style, a variant of the per-exit fit) with the
    highest held-out mean cost <= ``budget``. Reads the held-out split only.

    Raising tau can only move a sample to a later exit, so the held-out cost is non-decreasing
    in tau and constant between consecutive distinct held-out scores v_j < v_j+1 (on
    (v_j, v_j+1] the samples that leave are those with s >= v_j+1). The supremum of the tau
    within budget is therefore -inf, +inf or a held-out score: bisect over the sorted distinct
    scores of exits 1..N-1.
    """
    flops = np.asarray(flops, dtype=np.float64)
    budget = budget + 1e-9 * max(abs(flops[-1]), 1.0)  # float slack, as in solve_q
    cost = lambda tau: val.evaluate(global_thresholds(tau, val.n), flops)["mmacs"]
    if cost(math.inf) <= budget:
        return math.inf
    values = np.unique(val.scores[:-1])  # ascending
    lo, hi = -1, len(values)  # cost(values[lo]) <= budget (lo = -1: tau = -inf) < cost(values[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(float(values[mid])) <= budget:
            lo = mid
        else:
            hi = mid
    return -math.inf if lo < 0 else float(values[lo])


def accuracy_at_budgets(val_preds, val_targets, test_preds, test_targets, exit_flops, budgets):
    """Budgeted batch classification at fixed mean budgets (same unit as exit_flops).

    For each budget the prior's q is solved on the held-out split (see ``solve_q``), the
    thresholds are fitted on the held-out split, then applied to the test split. Returns one
    dict per budget: budget, accuracy (test, percent), flops (realized mean test cost),
    thresholds, exit_shares (test), q, heldout_flops, heldout_accuracy.
    Budgets outside [cost of exit 1, cost of the last exit] raise ValueError.
    """
    val = _Split(val_preds, val_targets)
    flops = _check_flops(exit_flops, val.n)
    _check_budgets(budgets, flops)
    test = _Split(test_preds, test_targets)  # only used after the thresholds are fixed
    rows = []
    for b in budgets:
        q = solve_q(val, flops, float(b))
        thresholds = val.thresholds(q)
        heldout, res = val.evaluate(thresholds, flops), test.evaluate(thresholds, flops)
        rows.append({"budget": float(b), "accuracy": res["accuracy"], "flops": res["mmacs"],
                     "thresholds": thresholds, "exit_shares": res["exit_shares"], "q": q,
                     "heldout_flops": heldout["mmacs"], "heldout_accuracy": heldout["accuracy"]})
    return rows
