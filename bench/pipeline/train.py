"""Training loop: the method's stages, one checkpoint per epoch, resumable, no method branches.

The trainer lets the method install itself on the model (gradient rescaling, its own
modules), asks it for its stages (which exits' losses are active, what trains, the
batch-norm policy of frozen parts, each stage's share of the epochs) and lays them out
under the run's training regime (methods.regimes: under disjoint and mixed a phase 1 that
trains the backbone and its final head alone comes first), calls its hook at each
stage's start and its ``train_step`` for every loaded batch, and runs its post-training
phase (a fit of small parameters on raw logits of a split that is never test); it never
looks at the method's name. The final model is the last epoch's: no checkpoint is
selected, on test or otherwise.

It also records what training cost (``training_record``): the method's declared passes per
step, wall-clock seconds per epoch (training and held-out evaluation apart), epochs per
stage and peak memory (bench.pipeline.memory says what is measured on CPU and CUDA).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as tdist
from torch import nn

import methods as methods_registry
from bench.engine import compiling, precision
from bench.backbones.common import parameters_per_exit
from bench.config import ScheduleConfig, TrainingConfig
from bench.data import unshard
from bench.fileio import UnreadableFile
from bench.pipeline.distributed import Dist, broadcast
from bench.pipeline.memory import PeakMemory, rss_bytes
from bench.pipeline.predict import predict
from bench.pipeline.step_setup import stage_context
from bench.pipeline.step_graphs import training_step
from bench.store import load_checkpoint, save_checkpoint
from bench.store.files import set_aside

log = logging.getLogger("bench.pipeline")

EFFECTIVE_PERCENTILE = 0.10  # paper Fig. 3a: threshold = 10th percentile of exit 1's losses


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the run is recorded as failed."""


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


class _RawLogits:
    """Stands in for a method in ``predict``: the raw head logits f_n, uncombined."""

    combine = staticmethod(list)


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights."""

    epoch: int = 0  # epochs finished, over all stages
    history: list[dict] = field(default_factory=list)
    epoch_costs: list[dict] = field(default_factory=list)  # one per epoch: seconds, memory
    post_training: dict | None = None  # the post-training phase, once it ran


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
    on_step: Callable[[dict], None] | None = None  # progress within the epoch, rank 0
    wrap: Callable[[nn.Module], nn.Module] | None = None  # e.g. DistributedDataParallel
    after_epoch: Callable[[nn.Module], None] | None = None  # e.g. average BN stats over ranks

    def __post_init__(self):
        self.method.install(self.model)
        self.groups = parameters_per_exit(self.model)
        self.plan = methods_registry.plan(self.method, self.model.num_exits,
                                          self.training.regime, self.training.epochs,
                                          self.training.backbone_epochs)
        self.stage_epochs = [p.epochs for p in self.plan]
        self.backbone_method = methods_registry.Method()  # phase 1's plain cross-entropy
        self._phase = self.plan[0]
        self.channels_last = self.training.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # Training runs under the precision's autocast. Evaluation stays float32: it is a
        # forward pass only (a small share of the time), and bf16 logits (8 significant
        # bits) would be coarser than the float16 predictions saved and thresholded.
        self.precision = precision.resolve(self.training.precision, self.device)
        self.autocast = precision.autocast(self.precision, self.device)
        self.scaler = precision.grad_scaler(self.precision, self.device)
        self.memory_measure = PeakMemory(self.device).measure
        self._at = (0, 0)  # (epoch, step) being trained, for error messages
        self._optimizer_state: dict = {}

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
        self.method.load_training_state(ckpt.get("method") or {})
        self._optimizer_state = ckpt["optimizer"]
        return TrainState(ckpt["epoch"], ckpt["history"], list(ckpt.get("epoch_costs") or []),
                          ckpt.get("post_training")), ckpt

    def _save(self, state: TrainState, stage: int) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.checkpoint, model=self.model.state_dict(),
                        optimizer=self._optimizer_state, scaler=self.scaler.state_dict(),
                        stage=stage, epoch=state.epoch, history=state.history,
                        method=self.method.training_state(), epoch_costs=state.epoch_costs,
                        post_training=state.post_training)

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> TrainState:
        self._rss_base = rss_bytes()  # CPU memory is measured above this (PeakMemory)
        self.method.begin_training(self.model, self.device)
        state, ckpt = self._resume()
        first_epoch = 0
        for s, (phase, n_epochs) in enumerate(zip(self.plan, self.stage_epochs)):
            last_epoch = first_epoch + n_epochs
            if state.epoch < last_epoch:
                self._enter(phase)
                self._fit_stage(s, phase.stage, first_epoch, n_epochs, state, ckpt)
            first_epoch = last_epoch
        self._enter(None)
        self._post_training(state)
        return state

    def _enter(self, phase: methods_registry.Phase | None) -> None:
        """Configure the model for ``phase`` (None: training is over). Phase 1 trains the
        backbone alone: the method's modules idle, no gradient rescaling; the method's own
        stages get its configuration back."""
        backbone_only = phase is not None and phase.method_stage is None
        self._phase = phase
        modules = methods_registry.modules_of(self.model)
        if modules is not None:
            modules.bypass = backbone_only
        if backbone_only:
            self.backbone_method.prepare(self.model)  # gradient rescaling off
            return
        self.method.prepare(self.model)
        self.method.configure(self.model, None if phase is None else phase.method_stage)

    @property
    def stages(self) -> list[methods_registry.Stage]:
        """The run's stages in order, phase 1 first where there is one."""
        return [p.stage for p in self.plan]

    def _stepper(self, phase) -> methods_registry.Method:
        """Whose ``train_step`` a phase's stage runs."""
        return self.backbone_method if phase.method_stage is None else self.method

    def _fit_stage(self, s, stage, first_epoch, n_epochs, state, ckpt) -> None:
        ctx = stage_context(self.model, self.method, self.groups, s, self.training.optimizer,
                            scaler=self.scaler, autocast=self.autocast, device=self.device,
                            compile=self.training.compile, wrap=self.wrap, stage=stage,
                            check_finite=self._check_finite,
                            all_reduce_mean=self._all_reduce_mean)
        self._step = training_step(self._stepper(self._phase), ctx,
                                   setting=self.training.cuda_graphs, device=self.device,
                                   resolved_precision=self.precision,
                                   compile=self.training.compile,
                                   world_size=self.dist.world_size)
        optimizer = ctx.optimizer
        if ckpt is not None and ckpt["stage"] == s and state.epoch > first_epoch:
            optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
        base_lr = self.training.optimizer.lr
        for epoch in range(state.epoch, first_epoch + n_epochs):
            factor = lr_factor(epoch - first_epoch, n_epochs, self.training.schedule)
            lr = base_lr * factor
            for group in optimizer.param_groups:
                group["lr"] = lr
            ctx.lr_factor = factor
            started = time.perf_counter()
            with PeakMemory(self.device, self._rss_base) as memory:
                losses, shares, steps = self._train_epoch(ctx, epoch)
            trained = time.perf_counter()
            if self.after_epoch:
                self.after_epoch(self.model)
            heldout = self._heldout_top1()
            state.epoch = epoch + 1
            rows = self._history_rows(epoch + 1, s + 1, lr, stage, losses, shares, heldout)
            state.history.extend(rows)
            state.epoch_costs.append({
                "epoch": epoch + 1, "stage": s + 1, "steps": steps,
                "train_seconds": trained - started,
                "eval_seconds": time.perf_counter() - trained,
                "peak_memory_mib": memory.peak_mib})
            self._optimizer_state = optimizer.state_dict()
            self._save(state, s)
            if self.on_epoch and self.dist.is_main:
                self.on_epoch({"epoch": epoch + 1, "stage": s + 1, "rows": rows,
                               "phase": self._phase.phase})

    def _check_finite(self, loss: torch.Tensor, sample_losses: torch.Tensor) -> None:
        if not self.dist.all_finite(loss):
            epoch, step = self._at
            raise NonFiniteLoss(f"training loss is {loss.item()} at epoch {epoch + 1}, "
                                f"step {step + 1} (per-exit losses "
                                f"{[round(v, 4) for v in sample_losses.mean(1).tolist()]})")

    def _all_reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        """Gradients a method computed itself (not through DDP), averaged over ranks."""
        if self.dist.world_size <= 1:
            return
        for t in tensors:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
            t /= self.dist.world_size

    def _train_epoch(self, ctx, epoch):
        stage = ctx.stage
        methods_registry.train_mode(self.model, stage.frozen_bn)
        reach = stage.reach  # later exits are not needed for this stage
        loss_sum = torch.zeros(reach, device=self.device)
        share_sum = torch.zeros(reach, device=self.device)
        steps = 0
        batches = self.data.batches("train", self.training.batch_size, device=self.device,
                                    epoch=epoch, seed=self.seed, rank=self.dist.rank,
                                    world_size=self.dist.world_size,
                                    drop_last=self._drop_last)
        per_epoch = self.data.num_batches("train", self.training.batch_size,
                                          world_size=self.dist.world_size,
                                          drop_last=self._drop_last)
        for x, y in batches:
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self._at = (epoch, steps)
            if self.training.compile:
                compiling.begin_step(self.device)
            sample_losses = self._step(x, y)[:reach]  # eager, or a replayed CUDA graph
            loss_sum += sample_losses.mean(dim=1)
            share_sum += effective_shares(sample_losses)
            steps += 1
            if self.on_step and self.dist.is_main:
                self.on_step({"epoch": epoch, "epochs": self.training.epochs, "step": steps,
                              "steps": per_epoch, "images": len(y) * self.dist.world_size,
                              "stage": ctx.stage_index + 1, "stages": len(self.plan),
                              "loss_sum": loss_sum, "active": stage.active_exits,
                              "phase": self._phase.phase})
        return (loss_sum / steps).tolist(), (share_sum / steps).tolist(), steps

    @property
    def _drop_last(self) -> bool | None:
        """training.drop_last for the data: true asks for the data's rule (drop the last
        partial batch unless the split holds less than one), false keeps it."""
        return None if self.training.drop_last else False

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

    # -- after training -----------------------------------------------------------------
    def _post_training(self, state: TrainState) -> None:
        """The method's post-training phase: raw logits of its split (the training split
        with training augmentation, in eval mode, or the held-out split), then its fit;
        saved in the checkpoint so that a resumed run does not fit again."""
        split = self.method.post_training_split()
        if split is None or self.method.post_training_done():
            return
        if split == "test":
            raise ValueError(f"method {self.method.name!r} asks to fit on the test split")
        started = time.perf_counter()
        logits, targets = self._raw_logits(split)
        if self.dist.is_main:
            self.method.fit_post_training(logits.to(self.device), targets.to(self.device),
                                          seed=self.seed)
        modules = methods_registry.modules_of(self.model)
        if modules is not None and self.dist.world_size > 1:  # rank 0's fit everywhere
            fitted = broadcast({k: v.cpu() for k, v in modules.state_dict().items()}, self.dist)
            modules.load_state_dict(fitted)
        state.post_training = {"split": split, "samples": int(len(targets)),
                               "seconds": time.perf_counter() - started}
        last_stage = len(self.plan) - 1
        self._save(state, last_stage)

    def _raw_logits(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw f_n [N, M, C] and targets [M] of a whole split, gathered over the ranks. The
        training split comes in one pass with training augmentation (a draw of its own)."""
        batches = self.data.batches(split, self.training.eval_batch_size, device=self.device,
                                    epoch=self.training.epochs, seed=self.seed,
                                    rank=self.dist.rank, world_size=self.dist.world_size,
                                    drop_last=False)
        logits, targets = predict(self.model, _RawLogits, batches,
                                  channels_last=self.channels_last)
        if self.dist.world_size <= 1:
            return logits, targets
        parts = [None] * self.dist.world_size
        tdist.all_gather_object(parts, (logits, targets))
        n = self.data.size(split)
        return (unshard([p[0].transpose(0, 1) for p in parts], n).transpose(0, 1).contiguous(),
                unshard([p[1] for p in parts], n))

    # -- the record ---------------------------------------------------------------------
    def training_record(self, state: TrainState) -> dict:
        """training.json: what training cost (docs/results-format.md)."""
        stages = []
        for s, (phase, n_epochs) in enumerate(zip(self.plan, self.stage_epochs)):
            stage = phase.stage
            stages.append({"stage": s + 1, "name": stage.name, "epochs": n_epochs,
                           "trains": stage.trains, "frozen_bn": stage.frozen_bn,
                           "scope": stage.scope, "phase": phase.phase,
                           "active_exits": [e + 1 for e in stage.active_exits],
                           "trainable_exits": [e + 1 for e in stage.trainable_exits],
                           "passes_per_step": self._stepper(phase).passes(stage).as_dict()})
        return {"method": self.method.name, "regime": self.training.regime,
                "batch_size": self.training.batch_size,
                "world_size": self.dist.world_size, "device": str(self.device),
                "precision": self.precision,
                "memory_measure": self.memory_measure, "stages": stages,
                "epochs": list(state.epoch_costs), "post_training": state.post_training}
