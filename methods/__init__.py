"""Training methods for early-exit networks behind one small interface.

>>> import methods
>>> m = methods.create("boostnet", temperature=0.5)
>>> preds = m.combine(outs)        # F_1..F_N, what each exit predicts with
>>> m.loss(outs, targets).backward()

A trainer needs nothing method-specific beyond :class:`methods.base.Method`: ``stages()``
says which exits' losses are active, which exits' parameters train and each stage's share
of the epochs; ``prepare(model)`` installs gradient rescaling on the backbone. A method
declares its options (``options_of``, ``defaults``) and what ``tuned`` may search
(``search_space``); ``create`` checks options against the declaration.
"""
from methods.base import (Method, Stage, create, defaults, names, option_names, options_of,
                          paper_curve, register, search_space, split_epochs)
from methods.options import (BOOL, KINDS, NUMBER, NUMBER_OR_NUMBERS, NUMBERS, Option,
                             OptionError, Range)

# Importing a module registers its method.
from methods import boostnet, joint, sequential  # noqa: E402,F401

__all__ = ["BOOL", "KINDS", "Method", "NUMBER", "NUMBERS", "NUMBER_OR_NUMBERS", "Option",
           "OptionError", "Range", "Stage", "create", "defaults", "names", "option_names",
           "options_of", "paper_curve", "register", "search_space", "split_epochs"]
