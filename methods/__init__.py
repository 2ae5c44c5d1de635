"""Training methods for early-exit networks behind one small interface.

>>> import methods
>>> m = methods.create("boostnet", temperature=0.5)
>>> preds = m.combine(outs)        # F_1..F_N, what each exit predicts with
>>> m.loss(outs, targets).backward()

A trainer needs nothing method-specific beyond :class:`methods.base.Method`: ``stages()``
says which exits' losses are active, which exits' parameters train and each stage's share
of the epochs; ``prepare(model)`` installs gradient rescaling on the backbone.
"""
from methods.base import Method, Stage, create, names, option_names, register, split_epochs

# Importing a module registers its method.
from methods import boostnet, joint, sequential  # noqa: E402,F401

__all__ = ["Method", "Stage", "create", "names", "option_names", "register", "split_epochs"]
