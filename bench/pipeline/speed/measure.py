"""``measure(settings)``: each stage of a method timed, with whatever else was asked for
timed beside it in the same rounds; the data, for the command to print."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

import methods
from bench import backbones, data
from bench.config import OptimizerConfig
from bench.engine import cuda_graphs, precision
from bench.errors import UsageError
from bench.registry import UnknownName
from bench.pipeline.speed.profiling import RoundProfile, op_times_of, profile_round
from bench.pipeline.speed.reference import reference_step
from bench.pipeline.speed.rounds import Round, alternate, loadavg
from bench.pipeline.speed.steps import (Step, epoch_data, epoch_round, fixed_round,
                                        method_step, random_batch)

OURS = "ours"
PLAIN = "ours, NCHW"
REFERENCE = "reference"


@dataclass(frozen=True)
class Settings:
    """What to time (the ``bench speed`` flags of the same names)."""

    optimizer: OptimizerConfig  # the suite's training.optimizer values
    backbone: str = "msdnet10_cifar"
    method: str = "boostnet"
    options: dict = field(default_factory=dict)  # the method's options
    stage: int | None = None  # 1-based; None: every stage
    against: str | None = None  # another method, its first stage timed beside ours
    reference: Path | None = None  # a checkout of SHI-Labs/Boosted-Dynamic-Networks
    plain: bool = False  # also our model with every tensor NCHW
    dataset: str = "cifar100"  # the classes the heads predict
    num_classes: int | None = None  # None: the data set's
    batch_size: int = 64
    rounds: int = 10
    warmup: int = 2
    epoch: bool = False  # rounds of epoch_steps steps on augmented batches
    epoch_steps: int = 50
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False  # the step recorded as a CUDA graph (training.cuda_graphs)
    profile: bool = False
    device: str = "cpu"
    seed: int = 0

    @property
    def steps_per_round(self) -> int:
        return self.epoch_steps if self.epoch else 1


@dataclass(frozen=True)
class StageTiming:
    """One stage of the method timed. ``times``: seconds per round of every timed
    implementation, ours first (a round is ``steps_per_round`` steps)."""

    stage: int  # 1-based
    stages: int
    name: str
    passes: dict  # the method's declared work per step (methods.Passes.as_dict)
    times: dict[str, list[float]]
    steps_per_round: int
    threads: int
    loadavg: tuple[float, ...]  # right after the timed rounds
    profile: RoundProfile | None = None  # --profile: one more round of ours
    op_times: dict[str, dict[str, float]] | None = None  # --profile with others timed


@dataclass(frozen=True)
class Measurement:
    settings: Settings
    precision: str  # resolved on the device
    num_classes: int
    stages: list[StageTiming]


def _checked(s: Settings) -> None:
    for key in ("rounds", "epoch_steps", "batch_size"):
        if getattr(s, key) < 1:
            raise UsageError(f"--{key.replace('_', '-')}: expected at least 1, got "
                             f"{getattr(s, key)}")
    if s.warmup < 0:
        raise UsageError(f"--warmup: expected at least 0, got {s.warmup}")
    recorded_from = cuda_graphs.WARMUP_STEPS + 1  # eager warm-up steps, then the recording
    if s.cuda_graphs and s.warmup * s.steps_per_round < recorded_from:
        raise UsageError(f"--cuda-graphs: the first {recorded_from} steps warm up and record "
                         f"the graph; give --warmup of at least {recorded_from} steps "
                         f"(got {s.warmup} round(s) of {s.steps_per_round})")


def classes(s: Settings, input_size) -> int:
    """The number of classes the heads predict: ``num_classes``, else the data set's, whose
    images must have the backbone's shape ``input_size`` (C, H, W)."""
    if s.num_classes is not None:
        return s.num_classes
    try:
        dataset = data.get(s.dataset)
    except UnknownName as err:
        raise UsageError(f"--dataset: {err}") from None
    n, shape = dataset.shape(dict(dataset.options))
    if tuple(shape) != tuple(input_size):
        raise UsageError(f"backbone {s.backbone!r} takes {_size(input_size)} images, data set "
                         f"{s.dataset!r} serves {_size(shape)}: pass --dataset with images "
                         f"of that shape (e.g. imagenet), or --num-classes")
    return n


def _size(shape) -> str:
    return "x".join(str(v) for v in shape)


def measure(s: Settings) -> Measurement:
    """Time every stage of ``s.method`` (or only ``s.stage``) as the settings say."""
    _checked(s)
    try:
        method = methods.create(s.method, **s.options)
        resolved = precision.resolve(s.precision, s.device)
    except ValueError as err:
        raise UsageError(str(err)) from None
    probe = backbones.create(s.backbone)  # its shape, its exits
    num_classes = classes(s, probe.input_size)
    stages = method.stages(probe.num_exits)
    if s.stage is not None and not 1 <= s.stage <= len(stages):
        raise UsageError(f"--stage: method {s.method!r} has stages 1..{len(stages)}")
    timings = []
    for i in ([s.stage - 1] if s.stage else range(len(stages))):
        try:
            rounds_of = _rounds(s, num_classes, i, probe.input_size)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            raise UsageError(str(err)) from None
        times = alternate(rounds_of, s.rounds, s.warmup)
        after = loadavg()
        profiled = profile_round(rounds_of[OURS], s.device) if s.profile else None
        ops = (op_times_of(rounds_of, s.device)
               if s.profile and len(rounds_of) > 1 else None)
        timings.append(StageTiming(i + 1, len(stages), stages[i].name,
                                   method.passes(stages[i]).as_dict(), times,
                                   s.steps_per_round, torch.get_num_threads(), after,
                                   profiled, ops))
    return Measurement(s, resolved, num_classes, timings)


def _rounds(s: Settings, num_classes: int, stage_index: int, input_size) -> dict[str, Round]:
    """The timed implementations in stage ``stage_index``, each a round: ours, then those
    ``plain``, ``against`` and ``reference`` add."""
    def ours(name: str, options: dict, index: int, plain: bool = False) -> Round:
        torch.manual_seed(s.seed)  # a fresh model, seeded
        model = backbones.create(s.backbone, num_classes=num_classes)
        step = method_step(model, methods.create(name, **options), s.optimizer,
                           stage_index=index, channels_last=s.channels_last,
                           device=s.device, precision_setting=s.precision,
                           compiled=s.compile, plain=plain, cuda_graphs=s.cuda_graphs)
        return _as_round(s, num_classes, step, input_size)

    rounds_of = {OURS: ours(s.method, s.options, stage_index)}
    if s.plain:
        rounds_of[PLAIN] = ours(s.method, s.options, stage_index, plain=True)
    if s.against:
        rounds_of[s.against] = ours(s.against, {}, 0)
    if s.reference:
        rounds_of[REFERENCE] = _as_round(s, num_classes, _reference(s, num_classes),
                                         input_size)
    return rounds_of


def _reference(s: Settings, num_classes: int) -> Step:
    """The reference's step on ``s.device``, under the same autocast as ours."""
    model = backbones.create(s.backbone, num_classes=num_classes)
    method = methods.create(s.method, **s.options)
    step = reference_step(s.reference, model, method, s.optimizer, s.seed, device=s.device)
    autocast = precision.autocast(precision.resolve(s.precision, s.device), s.device)

    def under_autocast(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast:
            step(x, y)

    return under_autocast


def _as_round(s: Settings, num_classes: int, step: Step, input_size) -> Callable[[], None]:
    """A step as one timed round: on a fixed random batch, or with ``epoch`` a run of
    ``epoch_steps`` steps over freshly augmented batches."""
    if s.epoch:
        batches = epoch_data(s.batch_size, s.epoch_steps, input_size, num_classes, s.seed)
        return epoch_round(step, batches, batch_size=s.batch_size, device=s.device,
                           seed=s.seed)
    return fixed_round(step, *random_batch(s.batch_size, input_size, num_classes, s.seed,
                                           s.device), s.device)
