"""Exit rules from saved logits: combiners (new per-exit predictions from F_n), criteria
(per-exit confidence scores) and their evaluation under budgets, thresholds fitted on the
held-out split only.

>>> from bench.exits import combiners, criteria, evaluate_rules
>>> combiners.names(), criteria.names()
(['caching', 'none', 'product'], ['entropy', 'margin', 'max_softmax', 'patience'])
>>> rows = evaluate_rules(val_logits, val_y, test_logits, test_y, exit_mmacs, budgets,
...                       criteria=["max_softmax", "entropy"], combiners=["none", "product"])
"""
from bench.exits import combiners, criteria
from bench.exits.rules import (combine, correct_at, evaluate_rules, finite, fit_global,
                               fit_per_exit, scored_split)

__all__ = ["combiners", "criteria", "combine", "correct_at", "evaluate_rules", "finite",
           "fit_global", "fit_per_exit", "scored_split"]
