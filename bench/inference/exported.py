"""The exported model: a trained network with its method's modules and the exit thresholds
of its run, whose ``predict`` really exits early (bench.inference.early_exit). Built from
the content of a file ``bench export`` wrote; reading and checking that file is
bench.export's job.

Thresholds come from the file, fitted on the run's held-out split:

- a fixed budget of the run's suite (``model.budgets``) uses the thresholds its evaluation
  fitted for that budget (the same as ``bench latency``);
- any other budget uses the point of the run's q curve with the largest mean cost on the
  held-out split that does not exceed it (costs in MMACs per image);
- ``budget_mmacs=None`` runs every image to the last exit.
"""
from __future__ import annotations

import math

import torch
from torch import nn

import methods
from bench import backbones
from bench.evaluate import finite_thresholds
from bench.inference.early_exit import early_exit

RELATIVE_TOLERANCE = 1e-6  # a budget this close to a fixed one is that budget


class ExportError(ValueError):
    """A file that is no export of this harness, or a budget it cannot serve."""


class ExportedModel(nn.Module):
    """The trained network with its method's modules, and the exit thresholds.

    ``forward(x)`` gives F_n of every exit (the method's combined logits) for a full
    forward; ``predict`` exits early. ``payload`` is an export's content (docs/deploy.md),
    already checked."""

    def __init__(self, payload: dict):
        super().__init__()
        backbone, method = payload["backbone"], payload["method"]
        self.network = backbones.create(backbone["name"], num_classes=payload["num_classes"],
                                        **(backbone.get("overrides") or {}))
        self.method = methods.create(method["name"], **(method.get("options") or {}))
        self.method.install(self.network)
        self.network.load_state_dict(payload["state_dict"])
        self.method.configure(self.network, None)
        self.exit_mmacs = [float(m) for m in payload["exit_mmacs"]]
        self.fixed = [{**b, "thresholds": [float(t) for t in b["thresholds"]]}
                      for b in payload["budgets"]]
        self.curve = sorted(payload["curve"], key=lambda c: c["heldout_mmacs"])
        self.info = {k: v for k, v in payload.items() if k != "state_dict"}
        self.eval()

    @property
    def num_exits(self) -> int:
        return self.network.num_exits

    @property
    def budgets(self) -> list[float]:
        """The run's fixed budgets (MMACs per image)."""
        return [float(b["budget_mmacs"]) for b in self.fixed]

    def thresholds(self, budget_mmacs: float | None) -> list[float]:
        """Per-exit thresholds for a mean budget in MMACs per image (see the module doc)."""
        if budget_mmacs is None:
            return finite_thresholds([math.inf] * self.num_exits)  # all to the last exit
        budget = float(budget_mmacs)
        for b in self.fixed:
            if abs(budget - b["budget_mmacs"]) <= RELATIVE_TOLERANCE * max(abs(budget), 1.0):
                return b["thresholds"]
        fits = [c for c in self.curve if c["heldout_mmacs"] <= budget]
        if not fits:
            low = self.curve[0]["heldout_mmacs"] if self.curve else self.exit_mmacs[-1]
            raise ExportError(f"budget_mmacs={budget} is below the cheapest operating point "
                              f"of this model ({low:.4g} MMACs per image on the held-out "
                              f"split); fixed budgets: {self.budgets}")
        return [float(t) for t in fits[-1]["thresholds"]]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.method.combine(self.network(x)))

    def predict(self, x: torch.Tensor, budget_mmacs: float | None = None,
                batch_size: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(classes [M], exits [M] 0-based, confidences [M]) for images ``x`` [M, C, H, W]
        (normalized as in training: ``info['input']``), exiting early under
        ``budget_mmacs``; ``batch_size`` 1 runs image by image."""
        return early_exit(self.network, self.method.combine, self.thresholds(budget_mmacs),
                          x, batch_size=batch_size)
