"""IMTA (Li et al., ICCV 2019): gradient equilibrium, then inline subnetwork collaboration
trained with one-for-all distillation, as two stages of one run.

- Stage A (share ``1 - isc_share`` of the epochs): the backbone and its own heads train on
  the sum of every exit's CE with gradient equilibrium (``grad_rescale``: IMTA's GE is the
  same gradient as BoostNet's rescaling), the ISC modules frozen and unused.
- Stage B (share ``isc_share``): the backbone and its heads are frozen; every exit gets a
  new final layer (methods.lib.isc): g_1 = W_1 h_1 + b_1, g_n = W_n [h_n ; u_n] + b_n with
  u_n = ReLU(BN1d(A_n g_{n-1} + a_n)), trained with one-for-all distillation from the
  frozen stage-A network's last exit f_N^A (the backbone's own last linear, run in the same
  forward): CE(g_N, y) + sum_{n<N} (1-gamma) CE(g_n, y) + gamma T^2 KL(f_N^A || g_n).
  ``frozen_bn`` is the batch-norm policy of the frozen backbone ('train': its statistics
  keep drifting with the batches, as the reference's ``model.train()``; 'eval': fixed).
- Inference: F_n = g_n; the stage-A linears are neither run nor counted.

Defaults follow the reference's code and run script: ``isc_detach`` false (exit n's loss
also trains exit n-1's new layers), T 1, gamma 0.1, KL reduced by 'mean' (divided by the
number of classes, as its ``nn.KLDivLoss()``). The reference trains stage B for as many
epochs again (90 + 90 on ImageNet); here both stages share ``training.epochs``.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from methods.base import LOSS_WEIGHTS, Method, register
from methods.heads import ExitHeads, ExitLinear, exit_shapes, final_linears
from methods.lib.distill import distillation_sample_losses
from methods.lib.isc import InlineCollaboration
from methods.options import BOOL, CHOICE, NUMBER, Option
from methods.training import Passes, Stage

STAGE_A, STAGE_B = 0, 1


class ISCHeads(ExitHeads):
    """Stage A: the backbone's own linears. Stage B and inference: the ISC chain; in stage
    B also the teacher, the backbone's own last linear on h_N (kept in ``teacher``)."""

    TRANSIENT = ExitHeads.TRANSIENT + ("teacher",)

    def __init__(self, feature_dims: Sequence[int], num_classes: int, isc_detach: bool):
        super().__init__()
        self.isc = InlineCollaboration(feature_dims, num_classes, isc_detach)
        self.collaborating = True  # set per stage by IMTA.configure (not in the state dict)
        self.distilling = False
        self.teacher: Tensor | None = None

    def head(self, n: int, h: Tensor, linear: ExitLinear, previous: Tensor | None) -> Tensor:
        if not self.collaborating:
            return linear.original(h)
        if self.distilling and n == len(self.isc.heads) - 1:
            self.teacher = linear.original(h).detach()  # f_N^A, [B, C]
        return self.isc.heads[n](h, previous)  # g_n, [B, C]


@register("imta")
class IMTA(Method):
    OPTIONS = (
        Option("grad_rescale", BOOL, True,
               "gradient equilibrium in stage A (IMTA's GE, the same as BoostNet's rescaling)"),
        Option("isc_detach", BOOL, False,
               "feed sg(g_{n-1}) to exit n's ISC module (false: the reference code, exit n's "
               "loss also trains the earlier new layers)"),
        Option("kd_temperature", NUMBER, 1.0, "distillation temperature T of stage B (> 0)",
               low=1e-6),
        Option("kd_weight", NUMBER, 0.1, "gamma: weight of the distillation term at exits "
                                         "1..N-1 in stage B", low=0.0, high=1.0),
        Option("kd_reduction", CHOICE, "mean",
               "KL reduction: 'mean' divides by batch x classes (the reference's "
               "nn.KLDivLoss()), 'batchmean' by the batch (the textbook KL)",
               choices=("mean", "batchmean")),
        Option("frozen_bn", CHOICE, "train",
               "stage B's frozen backbone batch norm: 'train' (statistics drift, the "
               "reference) or 'eval' (fixed)", choices=("train", "eval")),
        Option("isc_share", NUMBER, 0.5, "share of training.epochs for stage B",
               low=0.01, high=0.99),
        LOSS_WEIGHTS,
    )

    def __init__(self, **options):
        super().__init__(**options)
        self._stage: int | None = None

    def build_modules(self, model: nn.Module) -> ISCHeads:
        shapes = exit_shapes(final_linears(model))
        return ISCHeads([s.features for s in shapes], shapes[0].classes, self.isc_detach)

    def stages(self, num_exits: int) -> list[Stage]:
        every = tuple(range(num_exits))
        return [Stage(every, every, 1.0 - self.isc_share, trains="backbone",
                      name="A: backbone and own heads, gradient equilibrium"),
                Stage(every, every, self.isc_share, trains="method", frozen_bn=self.frozen_bn,
                      name="B: ISC heads, one-for-all distillation")]

    def configure(self, model: nn.Module, stage: int | None) -> None:
        self._stage = stage
        heads = self.exit_heads
        if heads is not None:
            heads.collaborating = stage != STAGE_A
            heads.distilling = stage == STAGE_B
            heads.teacher = None

    def stage_sample_losses(self, outs: Sequence[Tensor], targets: Tensor, stage: Stage
                            ) -> Tensor:
        if self._stage != STAGE_B:
            return self.sample_losses(outs, targets)
        teacher = self.exit_heads.teacher if self.exit_heads is not None else None
        if teacher is None:
            raise RuntimeError("IMTA stage B needs the frozen network's last-exit logits of "
                               "the same forward (the forward must reach the last exit)")
        return distillation_sample_losses(outs, targets, teacher, self.kd_temperature,
                                          self.kd_weight, self.kd_reduction)

    def passes(self, stage: Stage) -> Passes:
        if stage.trains == "method":
            return Passes(backward_through="method modules")
        return Passes()
