"""Exit rules evaluated from saved logits: every (combiner, criterion) pair at once.

For each pair: anytime top-1 of the combined prediction at every exit, the MSDNet budgeted
curve over q, and accuracy at fixed mean budgets. Thresholds are fitted on the held-out split
alone: the fit functions take one ``ScoredSplit``, the held-out one, and the test split is
only ever scored with thresholds already fixed. Early exiting is simulated from the saved
logits of every exit.

A combiner is given as a name or a mapping ``{"name": ..., **options}`` (e.g.
``{"name": "product", "weights": "linear"}``); a criterion as a name.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from bench.evaluate import combiners as exit_combiners
from bench.evaluate import criteria as exit_criteria
from bench.evaluate.accuracy import topk_accuracy
from bench.evaluate.budgets import DEFAULT_QS, solve_global, solve_q
from bench.evaluate.inputs import as_targets, check_budgets, check_exit_costs, stack_logits
from bench.evaluate.thresholds import ScoredSplit, finite_thresholds, global_thresholds

DEFAULT_COMBINER = "none"  # F_n unchanged
DEFAULT_CRITERION = "max_softmax"  # MSDNet's confidence
PER_EXIT = "budgeted"  # a rule's key for thresholds fitted per exit (MSDNet; the default)
GLOBAL = "budgeted_global"  # one threshold at every exit but the last (a variant)


def split_combiner(spec) -> tuple[str, dict]:
    """A combiner as a suite gives it, a name or a mapping ``{"name": ..., **options}``,
    as (name, options)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"], {k: v for k, v in spec.items() if k != "name"}
    raise ValueError(f"a combiner is a name or a mapping with a 'name' key, got {spec!r}")


def combine(logits, combiner=DEFAULT_COMBINER):
    """(z, pred): the combiner's per-exit logits [N, M, C] and their argmax [N, M]."""
    name, options = split_combiner(combiner)
    z = exit_combiners.create(name, **options)(stack_logits(logits))
    return z, z.max(dim=-1).indices


def scored_split(z, pred, targets, criterion) -> ScoredSplit:
    """One split's scores under ``criterion`` (a name), from combined logits z and predictions."""
    scores = exit_criteria.create(criterion).score(z)
    return ScoredSplit(scores.numpy(), pred.numpy(), as_targets(targets).numpy())


def fit_per_exit(heldout: ScoredSplit, flops, budget) -> dict:
    """MSDNet per-exit thresholds whose held-out mean cost is the highest <= budget (default)."""
    q = solve_q(heldout, np.asarray(flops, dtype=np.float64), float(budget))
    return {"q": q, "thresholds": heldout.thresholds(q)}


def fit_global(heldout: ScoredSplit, flops, budget) -> dict:
    """One threshold tau at every exit but the last, the highest held-out cost <= budget."""
    tau = solve_global(heldout, np.asarray(flops, dtype=np.float64), float(budget))
    return {"tau": tau, "thresholds": global_thresholds(tau, heldout.n)}


def _check_splits(val_logits, val_targets, test_logits, test_targets):
    val, test = stack_logits(val_logits), stack_logits(test_logits)
    for split, logits, targets in (("held-out", val, val_targets), ("test", test, test_targets)):
        if logits.shape[1] == 0:
            raise ValueError(f"the {split} split is empty: exit rules need both splits")
        if len(targets) != logits.shape[1]:
            raise ValueError(f"{split} targets have {len(targets)} entries for "
                             f"{logits.shape[1]} samples")
    if val.shape[0] != test.shape[0] or val.shape[2] != test.shape[2]:
        raise ValueError(f"held-out logits {tuple(val.shape)} and test logits "
                         f"{tuple(test.shape)} differ in exits or classes")
    return val, test


def _budget_row(fit, heldout, test, flops, budget, bounds) -> dict:
    """Accuracy at one budget on test, with thresholds fitted on held-out."""
    held, res = heldout.evaluate(fit["thresholds"], flops), test.evaluate(fit["thresholds"], flops)
    row = {"budget_mmacs": float(budget), "accuracy": res["accuracy"], "mmacs": res["mmacs"],
           "exit_shares": res["exit_shares"],
           "thresholds": finite_thresholds(fit["thresholds"], bounds)}
    if "q" in fit:
        row["q"] = fit["q"]
    if "tau" in fit:
        row["tau"] = finite_thresholds([fit["tau"]], bounds)[0]
    return row | {"heldout_mmacs": held["mmacs"], "heldout_accuracy": held["accuracy"]}


def _fitted(heldout, tested, flops, budgets, qs, global_threshold, bounds) -> dict:
    """The curve and the fixed-budget rows of one (combiner, criterion) pair."""
    out = {"score_bounds": list(bounds), "curve": []}
    for q in DEFAULT_QS if qs is None else qs:
        thresholds = heldout.thresholds(q)
        out["curve"].append({"q": float(q), **tested.evaluate(thresholds, flops),
                             "thresholds": finite_thresholds(thresholds, bounds)})
    fits = {PER_EXIT: fit_per_exit} | ({GLOBAL: fit_global} if global_threshold else {})
    for key, fit in fits.items():
        out[key] = [_budget_row(fit(heldout, flops, b), heldout, tested, flops, b, bounds)
                    for b in budgets]
    return out


def evaluate_rules(val_logits, val_targets, test_logits, test_targets, exit_mmacs, budgets,
                   criteria=(DEFAULT_CRITERION,), combiners=(DEFAULT_COMBINER,),
                   global_threshold=False, qs=None) -> list[dict]:
    """One JSON-ready dict per (combiner, criterion), combiners outermost:

    - combiner, combiner_options, criterion; score_bounds [low, high] (every score lies
      inside; thresholds high + 1 / low - 1 stand for +inf / -inf);
    - anytime [{exit, mmacs, top1}] on test and heldout_anytime [{exit, top1}]: top-1 of the
      combined prediction (the same for every criterion of a combiner);
    - curve: the MSDNet sweep, one point per q (default 0.05..1.95): q, accuracy, mmacs
      (realized mean test cost), exit_shares, thresholds (fitted on held-out);
    - budgeted: per budget, thresholds from the per-exit fit (q solved on held-out):
      budget_mmacs, accuracy, mmacs, exit_shares (test), thresholds, q, heldout_mmacs,
      heldout_accuracy;
    - budgeted_global (only with ``global_threshold``): the same with one threshold ``tau``.

    Logits are [N_exits, M, C] F_n as saved; targets [M]; exit_mmacs cumulative per exit;
    budgets in the same unit, within [exit_mmacs[0], exit_mmacs[-1]].
    """
    val, test = _check_splits(val_logits, val_targets, test_logits, test_targets)
    flops = check_exit_costs(exit_mmacs, val.shape[0])
    check_budgets(budgets, flops)
    crits = [exit_criteria.create(c) for c in criteria]  # unknown names and options fail early
    specs = [split_combiner(c) for c in combiners]
    for name, options in specs:
        exit_combiners.create(name, **options)
    rows = []
    for name, options in specs:
        val_z, val_pred = combine(val, {"name": name, **options})
        test_z, test_pred = combine(test, {"name": name, **options})
        # anytime top-1 breaks exact ties between classes with topk (anytime_accuracy), the
        # exit-time prediction with max (as the budgeted evaluation always has)
        anytime = [{"exit": n + 1, "mmacs": flops[n], "top1": a}
                   for n, a in enumerate(topk_accuracy(test_z, test_targets, 1))]
        held_anytime = [{"exit": n + 1, "top1": a}
                        for n, a in enumerate(topk_accuracy(val_z, val_targets, 1))]
        for crit in crits:
            heldout = scored_split(val_z, val_pred, val_targets, crit.name)
            tested = scored_split(test_z, test_pred, test_targets, crit.name)
            rows.append({"combiner": name, "combiner_options": options, "criterion": crit.name,
                         **_fitted(heldout, tested, flops, budgets, qs, global_threshold,
                                   crit.bounds(val.shape[0], val.shape[2])),
                         "anytime": [dict(a) for a in anytime],
                         "heldout_anytime": [dict(a) for a in held_anytime]})
    return rows


def correct_at(logits, targets, thresholds, criterion=DEFAULT_CRITERION,
               combiner=DEFAULT_COMBINER):
    """Per-image correctness, bool [M], of one split under fixed thresholds (as fitted, or
    their finite stand-ins): whether the prediction at the exit each image leaves at is right.
    For paired significance tests between rules or runs at one budget."""
    z, pred = combine(logits, combiner)
    split = scored_split(z, pred, targets, criterion)
    if len(thresholds) != split.n:
        raise ValueError(f"{len(thresholds)} thresholds for {split.n} exits")
    return torch.from_numpy(split.correct(thresholds))
