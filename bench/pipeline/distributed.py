"""DistributedDataParallel for ``torchrun --nproc_per_node=K -m bench run SUITE.yaml``.

Rank, local rank and world size come from torchrun's RANK / LOCAL_RANK / WORLD_SIZE
environment variables (never a ``--local_rank`` argument). NCCL on GPUs, gloo on CPU. Every
rank trains every run on its shard of the training split (Splits.batches shards like
DistributedSampler, reshuffled per epoch from the run's seed); ``training.batch_size`` is
per process, so the global batch is K x batch_size (the reference: 4 GPUs x 64). Rank 0
alone writes. Predictions are computed on every rank for its shard and gathered, the
sampler's padding removed (bench.data.unshard). Batch-norm running statistics are averaged
over ranks after every epoch so that every rank evaluates (and rank 0 saves) one model;
with ``training.sync_bn`` (CUDA only: torch's SyncBatchNorm has no CPU kernel) the batch
statistics themselves are computed over the global batch.

Stage-wise methods (sequential, BoostNet with joint: false) train one exit's parameters at
a time: DDP is rebuilt per stage over the parameters that train in it, and built with
find_unused_parameters, since an exit's group may hold parameters its forward skips.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from bench.config import TrainingConfig
from bench.data import unshard
from bench.pipeline.predict import predict_with_raw


@dataclass
class Dist:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (one all-reduce under DDP, so that all
        ranks stop together instead of one waiting forever in the next backward)."""
        ok = torch.isfinite(loss.detach()).float().reshape(1)
        if self.world_size > 1:
            tdist.all_reduce(ok, op=tdist.ReduceOp.MIN)
        return bool(ok.item())


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local, world


def init_from_env(device: str = "auto") -> Dist:
    """Join the process group torchrun describes (no-op for a single process).

    ``device`` is the suite's training.device: GPUs (NCCL, one per local rank) when it is
    cuda, or auto with CUDA available; otherwise gloo on CPU."""
    rank, local, world = env_world()
    if world <= 1:
        return Dist()
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                 timeout=timedelta(minutes=30))
    return Dist(rank=rank, world_size=world, local_rank=local)


def shutdown() -> None:
    _CONTROL.clear()
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def check_sync_bn(training: TrainingConfig, device: torch.device, dist: Dist) -> None:
    if training.sync_bn and dist.world_size > 1 and device.type != "cuda":
        raise ValueError("training.sync_bn needs CUDA devices (torch's SyncBatchNorm has no "
                         "CPU kernel); on CPU set training.sync_bn=false: batch statistics are "
                         "then per process and running statistics averaged after each epoch")


def prepare_model(model: nn.Module, training: TrainingConfig, device: torch.device,
                  dist: Dist) -> nn.Module:
    """SyncBatchNorm if asked (before DDP wraps the model); returns the model to train."""
    if dist.world_size > 1 and training.sync_bn:
        check_sync_bn(training, device, dist)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def wrapper(dist: Dist, device: torch.device):
    """The Trainer's ``wrap`` hook: a fresh DDP per stage (None for one process)."""
    if dist.world_size <= 1:
        return None

    def wrap(model: nn.Module) -> nn.Module:
        ids = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else None
        # Frozen parameters (requires_grad False) are left out of DDP's buckets.
        return DDP(model, device_ids=ids, find_unused_parameters=True)

    return wrap


@torch.no_grad()
def average_buffers(model: nn.Module, dist: Dist) -> None:
    """Mean of every floating-point buffer (BN running mean/var) over the ranks."""
    if dist.world_size <= 1:
        return
    for b in model.buffers():
        if b.is_floating_point():
            tdist.all_reduce(b, op=tdist.ReduceOp.SUM)
            b /= dist.world_size


def gather_predict(model, method, splits, split: str, batch_size: int, device, dist: Dist,
                   channels_last: bool = False, dtype: torch.dtype = torch.float32
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """F_n logits [N, M, C], raw head logits f_n [N, M, C] and targets [M] of a whole split:
    each rank predicts its shard, rank 0 gathers them and drops the padding; other ranks get
    their own shard back."""
    logits, raw, targets = predict_with_raw(model, method, splits.batches(
        split, batch_size, device=device, rank=dist.rank, world_size=dist.world_size),
        channels_last=channels_last, dtype=dtype)
    if dist.world_size <= 1:
        return logits, raw, targets
    parts = [None] * dist.world_size
    tdist.all_gather_object(parts, (logits, raw, targets))  # every shard has the same length
    n = splits.size(split)

    def gathered(k: int) -> torch.Tensor:  # [N, M, C] per rank -> [N, M_total, C]
        return unshard([p[k].transpose(0, 1) for p in parts], n).transpose(0, 1).contiguous()

    return gathered(0), gathered(1), unshard([p[2] for p in parts], n)


def predict_splits(model, method, splits, batch_size: int, device, dist: Dist,
                   channels_last: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """The held-out and test predictions a run saves (gathered as :func:`gather_predict`):
    per split F_n ``logits`` and raw head logits f_n ``raw_logits`` in float16, ``targets``.
    Saved in float16 and metrics computed from what was saved, so that a later evaluation
    from disk gives exactly the same numbers; F_n and f_n are both kept so that rules and
    ensembles can be applied later without retraining."""
    preds = {}
    for split in ("heldout", "test"):
        logits, raw, targets = gather_predict(model, method, splits, split, batch_size, device,
                                              dist, channels_last=channels_last,
                                              dtype=torch.float16)
        preds[split] = {"logits": logits, "raw_logits": raw, "targets": targets.long()}
    return preds


def broadcast(value, dist: Dist):
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if dist.world_size <= 1:
        return value
    box = [value]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist: Dist) -> None:
    if dist.world_size > 1:
        tdist.barrier()


# -- agreeing on a run's outcome ----------------------------------------------------------
# A run that raises on one rank must not leave the others waiting in a collective. Ranks
# agree after every run on a separate gloo group (so that the vote never pairs with a
# collective of the training's group): when every rank reaches the vote, all learn who
# failed and why, the run is recorded as failed and the suite goes on. A rank that failed
# while the others are still inside a collective (an error on that rank alone, in the middle
# of an epoch) waits AGREEMENT_TIMEOUT for them, then gives up with RanksDisagree: its
# process ends, and torchrun ends the others; rerunning resumes from the checkpoints.
AGREEMENT_TIMEOUT_ENV = "BENCH_AGREEMENT_TIMEOUT"  # seconds, default 300
_CONTROL: dict = {}


class RanksDisagree(RuntimeError):
    """This rank failed and the others did not come to the vote in time."""


def control_group(dist: Dist):
    """The gloo group of the votes, created once per job (a collective: every rank calls it
    at the same point, when the executor starts)."""
    if dist.world_size > 1 and "group" not in _CONTROL:
        _CONTROL["group"] = tdist.new_group(backend="gloo")
    return _CONTROL.get("group")


def agreement_timeout() -> timedelta:
    try:
        return timedelta(seconds=float(os.environ.get(AGREEMENT_TIMEOUT_ENV, "300")))
    except ValueError:  # not a number: the default
        return timedelta(seconds=300)


def agree(error: str | None, dist: Dist) -> list[str | None]:
    """Every rank's error (None where the run went well), on every rank; [error] for one
    process. Raises RanksDisagree on a rank that failed when the others do not vote."""
    if dist.world_size <= 1:
        return [error]
    group = control_group(dist)
    flag = torch.tensor([float(error is not None)])
    work = tdist.all_reduce(flag, op=tdist.ReduceOp.MAX, group=group, async_op=True)
    if error is None:
        work.wait()
    else:
        timeout = agreement_timeout()
        try:
            work.wait(timeout=timeout)
        except RuntimeError as err:
            raise RanksDisagree(
                f"rank {dist.rank} failed ({error}) and the other ranks did not stop within "
                f"{timeout.total_seconds():g} s ({AGREEMENT_TIMEOUT_ENV}); ending this process "
                "so that torchrun ends the others") from err
    if flag.item() == 0:
        return [None] * dist.world_size
    errors: list = [None] * dist.world_size
    tdist.all_gather_object(errors, error, group=group)
    return errors
