"""Zero Time Waste (Wolczyk et al., NeurIPS 2021): cascade connections between the exits,
then geometric ensembles of the exits so far, fitted after training on stored logits.

- Cascade (methods.lib.cascade): exit n >= 2's final layer also reads the previous exit's
  raw logits, detached: f_n = W_n h_n + b_n + V_n norm(sg(f_{n-1})), the reference's
  W [h_n ; norm(sg(f_{n-1}))] + b split in two so that the backbone's own final linear
  keeps its parameters; norm is LayerNorm(C) with ``layer_norm`` (the reference's ImageNet
  runs), the identity otherwise (its CIFAR runs). +C^2 MACs per exit from exit 2 on.
- Training: the harness's form trains blocks and heads jointly with the cascade on (sum of
  CE). ``frozen_share`` > 0 approximates the reference's regime (internal classifiers on a
  frozen pre-trained network): a first stage trains the network without the cascade, then
  the last ``frozen_share`` of the epochs train only the exits' final linear layers and
  the cascade on the frozen rest (MSDNet's head convolutions stay frozen: the reference's
  classifiers have none), batch norm fixed.
- Ensembles (methods.lib.ensemble), after training, backbone and heads frozen: for every
  exit n, z_n = (1/n) sum_{i<=n} exp(w_{n,i}) log_softmax(f_i) + b_n, fitted with Adam on
  the raw logits of ``ensemble_split`` ('train': one pass with training augmentation, the
  reference; 'heldout': the held-out split; never test). F_n = z_n once fitted. Their n C
  multiply-adds per exit run in ``combine``, outside the traced forward: counted
  analytically (C n (n + 1) / 2 cumulative at exit n).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from methods.base import LOSS_WEIGHTS, Method, register
from methods.heads import ExitHeads, ExitLinear, exit_shapes, final_linears
from methods.lib.cascade import CascadeLink
from methods.lib.ensemble import (REFERENCE_EPOCHS_CIFAR, GeometricEnsembles, ensemble_macs,
                                  fit_ensembles)
from methods.options import BOOL, CHOICE, INT, NUMBER, Option
from methods.training import Stage


class CascadeHeads(ExitHeads):
    """The cascade links of exits 2..N and the ensembles of exits 1..N (the ensembles run
    in ``combine``; ``ensembles_fitted`` says whether the post-training fit ran)."""

    def __init__(self, feature_dims: Sequence[int], num_classes: int, layer_norm: bool):
        super().__init__()
        self.links = nn.ModuleList(CascadeLink(d, num_classes, layer_norm)
                                   for d in feature_dims[1:])
        self.ensembles = GeometricEnsembles(len(feature_dims), num_classes)
        self.register_buffer("ensembles_fitted", torch.tensor(False))
        self.cascading = True  # set per stage by ZTW.configure (not in the state dict)

    def head(self, n: int, h: Tensor, linear: ExitLinear, previous: Tensor | None) -> Tensor:
        own = linear.original(h)  # W_n h_n + b_n, [B, C]
        if n == 0 or not self.cascading:
            return own
        return own + self.links[n - 1](previous)


@register("ztw")
class ZeroTimeWaste(Method):
    OPTIONS = (
        Option("layer_norm", BOOL, False,
               "LayerNorm on the carried logits (the reference: off on CIFAR, on on ImageNet)"),
        Option("ensemble_split", CHOICE, "train",
               "the split whose raw logits the ensembles are fitted on: 'train' (one pass "
               "with training augmentation, the reference) or 'heldout'",
               choices=("train", "heldout")),
        Option("ensemble_epochs", INT, REFERENCE_EPOCHS_CIFAR,
               "epochs of the ensembles' fit (the reference: 501 on CIFAR, 10 on ImageNet)",
               low=1),
        Option("ensemble_lr", NUMBER, 5e-4, "Adam learning rate of the ensembles' fit",
               low=1e-12),
        Option("ensemble_batch_size", INT, 512, "batch size of the ensembles' fit", low=1),
        Option("frozen_share", NUMBER, 0.0,
               "share of training.epochs for a last stage training only the final linears "
               "and the cascade on the frozen network (0: one joint stage)",
               low=0.0, high=0.99),
        LOSS_WEIGHTS,
    )

    def build_modules(self, model: nn.Module) -> CascadeHeads:
        shapes = exit_shapes(final_linears(model))
        return CascadeHeads([s.features for s in shapes], shapes[0].classes, self.layer_norm)

    def analytic_macs(self, num_exits: int, num_classes: int) -> list[int]:
        return ensemble_macs(num_exits, num_classes)

    def stages(self, num_exits: int) -> list[Stage]:
        every = tuple(range(num_exits))
        if self.frozen_share == 0.0:
            return [Stage(every, every, 1.0, name="joint training with the cascade")]
        return [Stage(every, every, 1.0 - self.frozen_share, trains="backbone",
                      name="joint training without the cascade"),
                Stage(every, every, self.frozen_share, trains="heads",
                      name="final linears and cascade on the frozen network")]

    def regime_refusal(self, regime: str) -> str | None:
        if self.frozen_share > 0.0:
            return ("frozen_share is ZTW's own split into a joint and a frozen-network stage; "
                    "under a regime give options.frozen_share: 0")
        return super().regime_refusal(regime)

    def configure(self, model: nn.Module, stage: int | None) -> None:
        if self.exit_heads is not None:
            self.exit_heads.cascading = not (self.frozen_share > 0.0 and stage == 0)

    def combine(self, outs: Sequence[Tensor]) -> list[Tensor]:
        heads = self.exit_heads
        if heads is None or not bool(heads.ensembles_fitted):
            return list(outs)
        return heads.ensembles(outs)

    def post_training_split(self) -> str:
        return self.ensemble_split

    def post_training_done(self) -> bool:
        return self.exit_heads is not None and bool(self.exit_heads.ensembles_fitted)

    def fit_post_training(self, logits: Tensor, targets: Tensor, seed: int) -> None:
        fitted = fit_ensembles(logits, targets, epochs=self.ensemble_epochs,
                               batch_size=self.ensemble_batch_size, lr=self.ensemble_lr,
                               seed=seed)
        self.exit_heads.ensembles.load_state_dict(fitted.state_dict())
        self.exit_heads.ensembles_fitted.fill_(True)
