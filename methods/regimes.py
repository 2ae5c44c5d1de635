"""Training regimes (Kubaty et al., arXiv 2407.14320): how a multi-exit network is trained
in phases around the method's own stages.

- ``joint``: the method's stages over all of ``training.epochs``, every parameter from the
  start (what every run did before regimes existed).
- ``disjoint``: phase 1 trains the backbone with its final head alone (plain cross-entropy
  of the last exit, the method's modules idle, no gradient rescaling) for
  ``backbone_epochs``; phase 2 runs the method's stages on the rest of the epochs with
  everything the last exit's logits depend on frozen (the backbone and the final head,
  :func:`methods.heads.last_exit_parameters`; wholly frozen modules in eval mode, their
  batch-norm statistics, dropout and drop-path included): only the earlier exits' heads
  and the method's modules train, on the method's loss.
- ``mixed``: the same phase 1, then the method's stages train every parameter with the
  method's loss.

``training.epochs`` is the run's total: phase 1 takes ``backbone_epochs`` of it (0 skips
phase 1, for a pretrained backbone), phase 2 the rest, split between the method's stages
as in a joint run. Each stage, phase 1 included, runs the suite's learning-rate schedule
over its own epochs (the trainer restarts it per stage).

A regime has no meaning for every method as configured: ``Method.regime_refusal`` says why
(docs/regimes.md has the table).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from methods.base import Method
from methods.training import Stage, split_epochs

JOINT, DISJOINT, MIXED = "joint", "disjoint", "mixed"
REGIMES = (JOINT, DISJOINT, MIXED)
PHASE_ONE = "phase 1: backbone and final head, cross-entropy of the last exit"


@dataclass(frozen=True)
class Phase:
    """One stage of a run's training plan: the stage, its epochs and which of the method's
    stages it is (None: phase 1, the backbone alone, trained without the method)."""

    stage: Stage
    epochs: int
    method_stage: int | None
    phase: int | None  # 1 or 2 under disjoint and mixed; None in a joint run


def backbone_stage(num_exits: int) -> Stage:
    """Phase 1: the last exit's loss alone, only what the last exit depends on trains, the
    earlier exits' heads (frozen, idle) in eval mode."""
    every = tuple(range(num_exits))
    return Stage((num_exits - 1,), every, 1.0, frozen_bn="eval_all", name=PHASE_ONE,
                 scope="last_exit")


def phase_two(stage: Stage, regime: str) -> Stage:
    """A method's stage as phase 2 of ``regime`` runs it."""
    if regime == DISJOINT:
        return dataclasses.replace(stage, scope="other_exits", frozen_bn="eval_all",
                                   name=f"phase 2 (backbone frozen): {stage.name}")
    return dataclasses.replace(stage, name=f"phase 2: {stage.name}")


def plan(method: Method, num_exits: int, regime: str, epochs: int,
         backbone_epochs: int | None) -> list[Phase]:
    """The run's stages in order with their epochs (``epochs``: the run's total)."""
    if regime not in REGIMES:
        raise ValueError(f"training regime must be one of {', '.join(REGIMES)}, got "
                         f"{regime!r}")
    stages = method.stages(num_exits)
    if regime == JOINT:
        if backbone_epochs:
            raise ValueError("backbone_epochs is for the disjoint and mixed regimes")
        return [Phase(s, n, i, None) for i, (s, n) in
                enumerate(zip(stages, split_epochs(epochs, stages)))]
    backbone_epochs = backbone_epochs or 0
    if not 0 <= backbone_epochs < epochs:
        raise ValueError(f"backbone_epochs must be in 0..{epochs - 1} (training.epochs is "
                         f"the total, phase 2 needs some), got {backbone_epochs}")
    first = [Phase(backbone_stage(num_exits), backbone_epochs, None, 1)] \
        if backbone_epochs else []
    counts = split_epochs(epochs - backbone_epochs, stages)
    return first + [Phase(phase_two(s, regime), n, i, 2)
                    for i, (s, n) in enumerate(zip(stages, counts))]


def refusal(method: Method, regime: str) -> str | None:
    """Why ``regime`` has no meaning for ``method`` as configured, or None."""
    if regime not in REGIMES:
        return f"unknown regime {regime!r}; known: {', '.join(REGIMES)}"
    return None if regime == JOINT else method.regime_refusal(regime)
