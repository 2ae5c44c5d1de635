"""The exported model: a trained network with its method's modules and the exit thresholds
of its run, whose ``predict`` really exits early (bench.inference.early_exit). Built from
the content of a file ``bench export`` wrote; reading and checking that file is
bench.export's job.

Thresholds come from the file, fitted on the run's held-out split, for a budget in MMACs
or in measured ms per image (bench.inference.operating_points).
"""
from __future__ import annotations

import torch
from torch import nn

import methods
from bench import backbones
from bench.inference.early_exit import early_exit
from bench.inference.operating_points import ExportError, OperatingPoints

__all__ = ["ExportError", "ExportedModel"]
RUNTIME = "pytorch"


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
        self.points = OperatingPoints(payload, RUNTIME)
        self.info = {k: v for k, v in payload.items() if k != "state_dict"}
        self.eval()

    @property
    def num_exits(self) -> int:
        return self.network.num_exits

    exit_mmacs = property(lambda self: self.points.exit_mmacs)
    curve = property(lambda self: self.points.curve)
    budgets = property(lambda self: self.points.budgets, doc="fixed budgets (MMACs per image)")

    def thresholds(self, budget_mmacs: float | None = None, budget_ms: float | None = None,
                   batch_size: int | None = None) -> list[float]:
        """Per-exit thresholds for a mean budget in MMACs or ms per image (see
        bench.inference.operating_points)."""
        return self.points.thresholds(budget_mmacs, budget_ms, batch_size)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.method.combine(self.network(x)))

    def predict(self, x: torch.Tensor, budget_mmacs: float | None = None,
                batch_size: int | None = None, budget_ms: float | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(classes [M], exits [M] 0-based, confidences [M]) for images ``x`` [M, C, H, W]
        (normalized as in training: ``info['input']``), exiting early under
        ``budget_mmacs`` or ``budget_ms`` (the latency measured with PyTorch at
        ``batch_size``); ``batch_size`` 1 runs image by image."""
        thresholds = self.thresholds(budget_mmacs, budget_ms, batch_size)
        return early_exit(self.network, self.method.combine, thresholds, x,
                          batch_size=batch_size)
