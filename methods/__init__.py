"""Training methods for early-exit networks behind one small interface.

>>> import methods
>>> m = methods.create("boostnet", temperature=0.5)
>>> preds = m.combine(outs)        # F_1..F_N, what each exit predicts with
>>> m.loss(outs, targets).backward()

A trainer needs nothing method-specific beyond :class:`methods.base.Method`: ``install``
makes a model the method's (gradient rescaling, the method's modules); ``stages()`` says
which exits' losses are active, what trains and each stage's share of the epochs;
``train_step`` does one loaded batch; ``post_training_split`` / ``fit_post_training`` fit
small parameters on stored logits after training. ``plan`` lays a method's stages out under
a training regime (joint, disjoint, mixed: methods.regimes); ``regime_refusal`` says why a
regime has no meaning for a method as configured. A method declares its options
(``options_of``, ``defaults``) and what ``tuned`` may search (``search_space``); ``create``
checks options against the declaration.
"""
from methods.base import (Method, create, defaults, names, option_names, options_of,
                          paper_curve, register, search_space)
from methods.heads import (ExitHeads, ExitLinear, ExitShape, attach, bypassed, final_linears,
                           forward_with_features, has_modules, last_exit_parameters,
                           method_parameters, modules_of)
from methods.options import (BOOL, CHOICE, INT, KINDS, NUMBER, NUMBER_OR_NUMBERS, NUMBERS,
                             Option, OptionError, Range)
from methods.training import (Passes, Stage, StepContext, plain_step, split_epochs,
                              stage_parameters, train_mode)
from methods.regimes import REGIMES, Phase, plan, refusal as regime_refusal

# Importing a module registers its method.
from methods import boostnet, imta, joint, kd, l2w, sequential, ztw  # noqa: E402,F401

__all__ = ["BOOL", "CHOICE", "ExitHeads", "ExitLinear", "ExitShape", "INT", "KINDS", "Method",
           "NUMBER", "NUMBERS", "NUMBER_OR_NUMBERS", "Option", "OptionError", "Passes", "Range",
           "Phase", "REGIMES", "Stage", "StepContext", "attach", "bypassed", "create",
           "defaults", "final_linears", "forward_with_features", "has_modules",
           "last_exit_parameters", "method_parameters", "modules_of", "names",
           "option_names", "options_of", "paper_curve", "plain_step", "plan", "regime_refusal",
           "register", "search_space", "split_epochs", "stage_parameters", "train_mode"]
