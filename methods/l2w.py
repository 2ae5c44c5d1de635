"""L2W-DEN (Han et al., ECCV 2022): learning to weight samples per exit, with a meta step.

A weight prediction network g_phi (methods.lib.l2w.WeightNet) maps each sample's detached
per-exit losses to per-exit weights w = 1 + eps (v - mean v); the network trains on
L(theta, w) = sum_n mean_b w_{b,n} CE_{b,n}. Each loaded batch is split in halves P1, P2;
for (train, meta) in ((P1, P2), (P2, P1)):

1. every ``meta_interval``-th half-step, the meta step (methods.lib.l2w.meta_step): a
   one-step SGD lookahead theta' on the train half through ``torch.func.functional_call``
   (second-order, in fp32, uncompiled, on the bare model), the meta loss at theta' on the
   meta half with every sample judged at the exit MSDNet's budgeted rule with q =
   ``target_q`` sends it to, one Adam step of phi (gradients averaged over DDP ranks);
2. the real step: w from the updated g_phi (no gradient to phi), L(theta, w) on the train
   half, one SGD step of the run's optimizer.

So two SGD steps per loaded batch, each on half of it. The weight network and its Adam
state exist only in training: they are the method's training state (in the checkpoint,
for an exact resume), not modules of the model, so there are no parameters and no MACs
at inference (costs equal joint's). Adam's learning rate follows the run's schedule
(``meta_lr`` times the schedule's factor of the epoch; the reference uses its own cosine
per iteration). Defaults: the reference's CIFAR command (README): H 500, one layer,
eps 0.8, 'col' centring, 'loss' input, meta lr 1e-4, meta weight decay 1e-4, interval 1,
q 0.75. The backbone is plain MSDNet (no gradient rescaling). The history's ``train_loss``
of an l2w run is the plain per-exit CE of the real steps.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.base import LOSS_WEIGHTS, Method, register
from methods.lib.l2w import (CENTRINGS, INPUT_TYPES, WeightNet, exit_weights, meta_step,
                             sample_losses, weighted_loss)
from methods.options import CHOICE, INT, NUMBER, Option
from methods.training import Passes, Stage, StepContext


@register("l2w")
class LearnToWeight(Method):
    OPTIONS = (
        Option("hidden", INT, 500, "width H of the weight network's hidden layers", low=1),
        Option("layers", INT, 1, "hidden layers L of the weight network", low=1),
        Option("epsilon", NUMBER, 0.8, "eps of w = 1 + eps (v - mean v) (ImageNet: 0.3)",
               low=0.0),
        Option("centring", CHOICE, "col", "mean of v over exits per sample ('col', CIFAR), "
                                          "over the batch per exit ('row') or both ('mat', "
                                          "ImageNet)", choices=CENTRINGS),
        Option("input_type", CHOICE, "loss", "the weight network's input: per-exit losses, "
                                             "max softmax ('conf') or both",
               choices=INPUT_TYPES),
        Option("meta_lr", NUMBER, 1e-4, "Adam learning rate of the weight network",
               low=1e-12),
        Option("meta_weight_decay", NUMBER, 1e-4, "Adam weight decay of the weight network",
               low=0.0),
        Option("meta_interval", INT, 1, "a meta step every this many half-batch steps "
                                        "(ImageNet: 100)", low=1),
        Option("target_q", NUMBER, 0.75, "q of the meta loss's target exits, P_k ~ q^k",
               low=1e-6),
        LOSS_WEIGHTS,
    )
    grad_rescale = False

    def __init__(self, **options):
        super().__init__(**options)
        self.wpn: WeightNet | None = None
        self.wpn_optimizer: torch.optim.Optimizer | None = None
        self.half_steps = 0  # real steps taken, over the whole run (meta_interval counts them)

    def begin_training(self, model: nn.Module, device: torch.device) -> None:
        self.wpn = WeightNet(model.num_exits, self.hidden, self.layers,
                             self.input_type).to(device)
        self.wpn_optimizer = torch.optim.Adam(self.wpn.parameters(), lr=self.meta_lr,
                                              weight_decay=self.meta_weight_decay)
        self.half_steps = 0

    def training_state(self) -> dict:
        if self.wpn is None:
            return {}
        return {"wpn": self.wpn.state_dict(), "optimizer": self.wpn_optimizer.state_dict(),
                "half_steps": self.half_steps}

    def load_training_state(self, state: dict) -> None:
        if not state:
            return
        if self.wpn is None:
            raise RuntimeError("l2w: begin_training must build the weight network before a "
                               "checkpoint's state is loaded")
        self.wpn.load_state_dict(state["wpn"])
        self.wpn_optimizer.load_state_dict(state["optimizer"])
        self.half_steps = int(state["half_steps"])

    def _exit_scale(self, num_exits: int, like: Tensor) -> Tensor | None:
        if self.loss_weights is None:
            return None
        return torch.tensor(self.weights(num_exits), dtype=like.dtype, device=like.device)

    def train_step(self, ctx: StepContext, x: Tensor, y: Tensor) -> Tensor:
        if x.shape[0] < 2:
            raise ValueError("l2w splits every loaded batch in two halves; it needs at least "
                             "2 images per batch")
        if self.wpn is None:
            raise RuntimeError("l2w: begin_training(model, device) builds the weight network "
                               "before the first step")
        half = x.shape[0] // 2
        p1, p2 = (x[:half], y[:half]), (x[half:], y[half:])
        rows = []
        for (x_t, y_t), (x_m, y_m) in ((p1, p2), (p2, p1)):
            if self.half_steps % self.meta_interval == 0:
                self._meta_step(ctx, x_t, y_t, x_m, y_m)
            rows.append(self._real_step(ctx, x_t, y_t))
            self.half_steps += 1
        return torch.cat(rows, dim=1)  # [N, B]

    def _meta_step(self, ctx: StepContext, x_t, y_t, x_m, y_m) -> None:
        for group in self.wpn_optimizer.param_groups:
            group["lr"] = self.meta_lr * ctx.lr_factor
        meta_step(ctx.model, self.wpn, self.wpn_optimizer, ctx.optimizer, x_t, y_t, x_m, y_m,
                  epsilon=self.epsilon, centring=self.centring, q=self.target_q,
                  exit_scale=self._exit_scale(ctx.model.num_exits, x_t),
                  reduce_grads=ctx.all_reduce_mean)

    def _real_step(self, ctx: StepContext, x: Tensor, y: Tensor) -> Tensor:
        with ctx.autocast:
            outs = [o.float() for o in ctx.net(x, num_exits=ctx.stage.reach)]
            losses = sample_losses(outs, y)  # [B, N]
            with torch.no_grad():
                w = exit_weights(self.wpn(self.wpn.features(outs, y)), self.epsilon,
                                 self.centring)
            scale = self._exit_scale(len(outs), losses)
            loss = weighted_loss(losses, w if scale is None else w * scale)
        ctx.check_finite(loss, losses.T)
        ctx.step(loss)
        return losses.detach().T  # [N, B/2]

    def graph_blocker(self, stage: Stage) -> str | None:
        return ("its step branches on a step counter (the meta step every meta_interval-th "
                "half batch), takes a second-order lookahead and two optimizer steps on half "
                "batches, and steps an Adam of its own whose learning rate follows the "
                "schedule")

    def passes(self, stage: Stage) -> Passes:
        # Per half-batch: the real forward and backward; every meta_interval-th one also
        # the lookahead forward, its backward with a graph, the forward at theta' and the
        # second-order backward through both. Two halves per loaded batch.
        meta = 1.0 / self.meta_interval
        return Passes(forward=1.0 + 2.0 * meta, backward=1.0 + 2.0 * meta,
                      second_order=meta, optimizer_steps=2)
