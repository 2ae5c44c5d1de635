"""Training loop: the method's stages, one checkpoint per epoch, resumable, no method branches.

The trainer asks the method for its stages (which exits' losses are active, which exits'
parameter groups train, each stage's share of the epochs) and lets it install gradient
rescaling; it never looks at the method's name. The final model is the last epoch's: no
checkpoint is selected, on test or otherwise.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import methods as methods_registry
from bench.backbones.common import parameters_per_exit
from bench.config import OptimizerConfig, ScheduleConfig, TrainingConfig
from bench.fileio import UnreadableFile
from bench.pipeline.distributed import Dist, broadcast
from bench.pipeline.predict import predict
from bench.store import load_checkpoint, save_checkpoint
from bench.store.files import set_aside

log = logging.getLogger("bench.pipeline")

EFFECTIVE_PERCENTILE = 0.10  # paper Fig. 3a: threshold = 10th percentile of exit 1's losses


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the run is recorded as failed."""


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights."""

    epoch: int = 0  # epochs finished, over all stages
    history: list[dict] = field(default_factory=list)


def lr_factor(epoch_in_stage: int, stage_epochs: int, schedule: ScheduleConfig) -> float:
    """Learning-rate multiplier for an epoch (0-based) of a stage of ``stage_epochs``."""
    if schedule.name == "constant":
        return 1.0
    if schedule.name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch_in_stage / stage_epochs))
    # step: x gamma at each milestone, given as fractions of the stage; a milestone at
    # fraction m starts at epoch ceil(m * E) (epochs 150 and 225 of 300).
    passed = sum(epoch_in_stage >= math.ceil(m * stage_epochs - 1e-9)
                 for m in schedule.milestones)
    return schedule.gamma ** passed


def make_optimizer(params: list[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD, the only optimizer a suite can name (the paper's)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def freeze_all_but(model: nn.Module, groups: list[list[nn.Parameter]], trainable_exits
                   ) -> list[nn.Parameter]:
    """requires_grad on the groups of ``trainable_exits`` only; returns those parameters."""
    keep = {id(p) for e in trainable_exits for p in groups[e]}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: nn.Module) -> None:
    """Train mode, except modules whose parameters are all frozen: their batch-norm
    statistics must not drift either (a frozen block stays exactly as it was)."""
    model.train()
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            m.eval()


def top1(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    return [100.0 * (l.argmax(1) == targets).sum().item() / len(targets) for l in logits]


def state_dict_mismatch(mine: dict, theirs: dict) -> str | None:
    """Why a checkpoint's model state cannot be loaded into the model (checked before
    loading: a failed strict load would leave the model half overwritten), or None."""
    if theirs.keys() != mine.keys():
        names = sorted(set(theirs) ^ set(mine))
        return f"does not fit the model: keys differ ({', '.join(names[:3])}...)"
    for key, value in mine.items():
        if getattr(theirs[key], "shape", None) != value.shape:
            return f"does not fit the model: {key} has shape " \
                   f"{tuple(getattr(theirs[key], 'shape', ()))}, the model's {tuple(value.shape)}"
    return None


def effective_shares(sample_losses: torch.Tensor) -> torch.Tensor:
    """Paper Fig. 3a: per exit, share of samples whose loss exceeds the 10th percentile of
    exit 1's losses in the same batch. ``sample_losses`` is [exits, batch]."""
    threshold = torch.quantile(sample_losses[0].float(), EFFECTIVE_PERCENTILE)
    return (sample_losses > threshold).float().mean(dim=1)


@dataclass
class Trainer:
    model: nn.Module
    method: methods_registry.Method
    data: object  # bench.data.Splits
    training: TrainingConfig
    seed: int
    device: torch.device
    checkpoint: Path
    dist: Dist = field(default_factory=Dist)
    on_epoch: Callable[[dict], None] | None = None  # progress callback, rank 0
    wrap: Callable[[nn.Module], nn.Module] | None = None  # e.g. DistributedDataParallel
    after_epoch: Callable[[nn.Module], None] | None = None  # e.g. average BN stats over ranks

    def __post_init__(self):
        self.method.prepare(self.model)
        self.groups = parameters_per_exit(self.model)
        self.stages = self.method.stages(self.model.num_exits)
        self.stage_epochs = methods_registry.split_epochs(self.training.epochs, self.stages)
        self.channels_last = self.training.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        amp = self.training.amp and self.device.type == "cuda"
        self.autocast = torch.autocast(self.device.type, dtype=torch.float16, enabled=amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp)

    # -- checkpoints ------------------------------------------------------------------
    def _resume(self) -> tuple[TrainState, dict | None]:
        """The last checkpoint's state. One that does not load, or does not fit the model,
        is set aside (``checkpoint.pt.corrupt-<time>``, by rank 0) and the run starts over;
        under torchrun rank 0 decides for all."""
        ckpt, problem = None, None
        try:
            ckpt = load_checkpoint(self.checkpoint)
            problem = state_dict_mismatch(self.model.state_dict(), ckpt["model"])
        except FileNotFoundError:
            pass
        except UnreadableFile as err:
            problem = err.reason
        if self.dist.is_main and problem:
            moved = set_aside(self.checkpoint)
            log.warning("%s is unreadable (%s); moved to %s; the run starts over",
                        self.checkpoint, problem, moved.name)
        resume = broadcast(ckpt is not None and not problem, self.dist)
        if not resume:
            return TrainState(), None
        if ckpt is None or problem:
            raise RuntimeError(f"rank {self.dist.rank} cannot read {self.checkpoint} "
                               f"({problem or 'missing'}) that rank 0 resumes from")
        self.model.load_state_dict(ckpt["model"])
        return TrainState(ckpt["epoch"], ckpt["history"]), ckpt

    def _save(self, state: TrainState, optimizer, stage: int) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.checkpoint, model=self.model.state_dict(),
                        optimizer=optimizer.state_dict(), scaler=self.scaler.state_dict(),
                        stage=stage, epoch=state.epoch, history=state.history)

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> TrainState:
        state, ckpt = self._resume()
        first_epoch = 0
        for s, (stage, n_epochs) in enumerate(zip(self.stages, self.stage_epochs)):
            last_epoch = first_epoch + n_epochs
            if state.epoch < last_epoch:
                self._fit_stage(s, stage, first_epoch, n_epochs, state, ckpt)
            first_epoch = last_epoch
        return state

    def _fit_stage(self, s, stage, first_epoch, n_epochs, state, ckpt) -> None:
        params = freeze_all_but(self.model, self.groups, stage.trainable_exits)
        optimizer = make_optimizer(params, self.training.optimizer)
        if ckpt is not None and ckpt["stage"] == s and state.epoch > first_epoch:
            optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
        net = self.wrap(self.model) if self.wrap else self.model
        if self.training.compile:
            # torch.compile: msdnet10_cifar's CPU step 1.32 -> 1.14 s (2 threads), after a
            # first step that compiles for minutes (once per stage: each stage's forward
            # stops at another exit). Evaluation stays eager.
            net = torch.compile(net)
        base_lr = self.training.optimizer.lr
        for epoch in range(state.epoch, first_epoch + n_epochs):
            lr = base_lr * lr_factor(epoch - first_epoch, n_epochs, self.training.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            losses, shares = self._train_epoch(net, optimizer, stage, epoch)
            if self.after_epoch:
                self.after_epoch(self.model)
            heldout = self._heldout_top1()
            state.epoch = epoch + 1
            rows = self._history_rows(epoch + 1, s + 1, lr, stage, losses, shares, heldout)
            state.history.extend(rows)
            self._save(state, optimizer, s)
            if self.on_epoch and self.dist.is_main:
                self.on_epoch({"epoch": epoch + 1, "stage": s + 1, "rows": rows})

    def _train_epoch(self, net, optimizer, stage, epoch):
        train_mode(self.model)
        reach = max(stage.active_exits) + 1  # later exits are not needed for this stage
        loss_sum = torch.zeros(reach, device=self.device)
        share_sum = torch.zeros(reach, device=self.device)
        steps = 0
        batches = self.data.batches("train", self.training.batch_size, device=self.device,
                                    epoch=epoch, seed=self.seed, rank=self.dist.rank,
                                    world_size=self.dist.world_size)
        for x, y in batches:
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast:
                outs = net(x, num_exits=reach)
                sample_losses = self.method.sample_losses([o.float() for o in outs], y)
                loss = self.method.loss_from_samples(sample_losses, stage.active_exits)
            if not self.dist.all_finite(loss):
                raise NonFiniteLoss(f"training loss is {loss.item()} at epoch {epoch + 1}, "
                                    f"step {steps + 1} (per-exit losses "
                                    f"{[round(v, 4) for v in sample_losses.mean(1).tolist()]})")
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            detached = sample_losses.detach()
            loss_sum += detached.mean(dim=1)
            share_sum += effective_shares(detached)
            steps += 1
        return (loss_sum / steps).tolist(), (share_sum / steps).tolist()

    def _heldout_top1(self) -> list[float]:
        if self.data.size("heldout") == 0:
            return [math.nan] * self.model.num_exits
        logits, targets = predict(self.model, self.method, self.data.batches(
            "heldout", self.training.eval_batch_size, device=self.device),
            channels_last=self.channels_last)
        return top1(logits, targets)

    def _history_rows(self, epoch, stage_no, lr, stage, losses, shares, heldout) -> list[dict]:
        rows = []
        for n in range(self.model.num_exits):
            computed = n < len(losses)
            rows.append({
                "epoch": epoch, "stage": stage_no, "exit": n + 1, "lr": lr,
                "train_loss": losses[n] if computed and n in stage.active_exits else math.nan,
                "effective_share": shares[n] if computed else math.nan,
                "heldout_top1": heldout[n]})
        return rows
