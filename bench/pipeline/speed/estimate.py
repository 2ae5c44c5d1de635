"""``bench run SUITE --dry-run --estimate``: what a suite will cost on this machine, before it
starts.

Each distinct (backbone, method, precision, batch size) of the runs is timed here, stage
by stage: ``WARMUP`` untimed training steps (``WARMUP_GRAPHED`` where the step is recorded
as a CUDA graph: the warm-up and the recording), then ``TIMED`` steps, each waited for;
the median is its seconds per step. Steps are those of the speed library
(bench.pipeline.speed.steps: the trainer's own step setup) on a random batch of the run's
input size and classes, under the suite's precision, memory format, compile and CUDA-graph
settings, on the suite's device as it resolves here. The load average is printed beside:
other work on a shared machine slows the steps, and the estimate with them.

A run's hours: per stage, its epochs (``methods.plan``, as the trainer splits them, phase 1
of a disjoint or mixed run costed as the method's dearest stage, disjoint's phase 2 as if
the backbone trained: both from above) x steps per epoch (the training images left after the held-out split and any
``dataset.subset``, over the batch size: the last partial batch dropped as
``training.drop_last`` says) x the stage's seconds per step; plus evaluation: forward
passes (float32, no gradient, at ``training.eval_batch_size``) over the held-out split
after every epoch, the held-out and test splits at the end and the method's
post-training split, timed per image. Left out: data loading from disk (CIFAR is held
on the device), checkpoints, the post-training fit itself (ZTW's ensembles: seconds
on stored logits), evaluation from the saved logits, and anything else sharing the
machine.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import torch

import methods
from bench import backbones, data
from bench.config import RunSpec
from bench.config.types import thaw
from bench.engine import cuda_graphs, precision
from bench.errors import UsageError
from bench.pipeline.speed.rounds import alternate, loadavg
from bench.pipeline.speed.steps import method_step, random_batch, synchronize

WARMUP = 2  # untimed steps
WARMUP_GRAPHED = cuda_graphs.WARMUP_STEPS + 2  # untimed steps where a graph is recorded
TIMED = 5  # timed steps per stage; their median is the estimate
EVAL_REPEATS = 3  # timed forward passes for the evaluation's seconds per image
# Training and test images of the data sets whose options do not say (train_size,
# test_size): the files' sizes.
KNOWN_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000),
               "mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000),
               "imagenet": (1_281_167, 50_000)}


@dataclass(frozen=True)
class StageTime:
    name: str
    seconds_per_step: float


@dataclass(frozen=True)
class SettingTime:
    """One distinct (backbone, method, precision, batch size), timed."""
    backbone: str  # label
    method: str  # label
    precision: str  # resolved here
    batch_size: int
    stages: tuple[StageTime, ...]
    eval_seconds_per_image: float


@dataclass(frozen=True)
class RunEstimate:
    run_id: str
    setting: SettingTime
    steps_per_epoch: int
    stage_epochs: tuple[int, ...]
    train_hours: float
    eval_images: int
    eval_hours: float

    @property
    def hours(self) -> float:
        return self.train_hours + self.eval_hours


@dataclass(frozen=True)
class Estimate:
    device: str
    threads: int
    cuda_graphs: bool | str
    warmup: int  # untimed steps per stage
    loadavg: tuple[float, ...]  # right after the timing
    settings: tuple[SettingTime, ...]
    runs: tuple[RunEstimate, ...]
    seconds: float  # what the estimate itself took

    @property
    def hours(self) -> float:
        return sum(r.hours for r in self.runs)


def device_here(setting: str) -> str:
    """The suite's training.device as it resolves on this machine; a CUDA device this
    machine lacks is a UsageError (the estimate times steps here)."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--estimate times training steps on this machine, but "
                         f"training.device is {setting} and it has no CUDA GPU (estimate "
                         "on the machine that trains, or --set training.device=cpu)")
    return setting


def split_sizes(spec: RunSpec) -> tuple[int, int, int]:
    """(training, held-out, test) images of a run."""
    ds = spec.dataset
    options = dict(ds.options)
    train_size, test_size = options.get("train_size"), options.get("test_size")
    known = KNOWN_SIZES.get(ds.name)
    if train_size is None or test_size is None:
        if known is None:
            raise UsageError(f"--estimate: data set {ds.name!r} does not say how many images "
                             "it has (dataset.options train_size and test_size)")
        train_size, test_size = train_size or known[0], test_size or known[1]
    train = train_size - ds.heldout
    if ds.subset.train is not None:
        train = min(train, ds.subset.train)
    test = min(test_size, ds.subset.test) if ds.subset.test is not None else test_size
    return train, ds.heldout, test


def steps_per_epoch(train_images: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch: the last partial one dropped (``drop_last``) unless the split
    holds less than one batch, as the data's rule says."""
    if drop_last and train_images >= batch_size:
        return train_images // batch_size
    return math.ceil(train_images / batch_size)


def _method(spec: RunSpec) -> methods.Method:
    """The run's method, each ``tuned`` option at its default."""
    return spec.method.create()


def _model(spec: RunSpec) -> torch.nn.Module:
    torch.manual_seed(0)
    return backbones.create(spec.backbone_name, num_classes=spec.num_classes, **spec.overrides)


def untimed_steps(cuda_graphs_setting, device: str) -> int:
    """Enough untimed steps that the timed ones are replays where a graph is recorded."""
    graphs = cuda_graphs_setting is True or (cuda_graphs_setting == "auto"
                                             and device.startswith("cuda"))
    return WARMUP_GRAPHED if graphs else WARMUP


def time_setting(spec: RunSpec, device: str) -> SettingTime:
    """Every stage of the run's method timed on ``device``, and its evaluation."""
    training = spec.training
    resolved = precision.resolve(training.precision, device)
    n_stages = len(_method(spec).stages(_model(spec).num_exits))
    stages = []
    for i in range(n_stages):
        model, method = _model(spec), _method(spec)
        step = method_step(model, method, training.optimizer, stage_index=i,
                           channels_last=training.channels_last, device=device,
                           precision_setting=training.precision, compiled=training.compile,
                           cuda_graphs=training.cuda_graphs)
        x, y = random_batch(training.batch_size, spec.input_size, spec.num_classes, 0, device)
        stages.append(StageTime(method.stages(model.num_exits)[i].name,
                                _median_seconds(lambda: step(x, y), device, untimed_steps(
                                    training.cuda_graphs, device), TIMED)))
    return SettingTime(spec.backbone_label, spec.method_label, resolved, training.batch_size,
                       tuple(stages), _eval_seconds_per_image(spec, device))


def _median_seconds(fn, device: str, warmup: int, timed: int) -> float:
    """Median seconds of ``fn``, each call waited for, after ``warmup`` untimed calls."""
    def waited() -> None:
        fn()
        synchronize(device)

    return statistics.median(alternate({"fn": waited}, timed, warmup)["fn"])


def _eval_seconds_per_image(spec: RunSpec, device: str) -> float:
    """A forward pass over every exit, float32 and without gradients, per image, at the
    evaluation batch size (as the trainer evaluates)."""
    model, method = _model(spec), _method(spec)
    method.install(model)
    model.to(device).eval()
    memory_format = torch.channels_last if spec.training.channels_last \
        else torch.contiguous_format
    model.to(memory_format=memory_format)
    batch = spec.training.eval_batch_size
    x, _ = random_batch(batch, spec.input_size, spec.num_classes, 0, device)
    x = x.contiguous(memory_format=memory_format)

    def forward():
        with torch.no_grad():
            model(x)

    return _median_seconds(forward, device, 1, EVAL_REPEATS) / batch


def run_estimate(spec: RunSpec, setting: SettingTime) -> RunEstimate:
    training = spec.training
    train, heldout, test = split_sizes(spec)
    steps = steps_per_epoch(train, training.batch_size, training.drop_last)
    method = _method(spec)
    plan = methods.plan(method, len(spec.exit_mmacs), training.regime, training.epochs,
                        training.backbone_epochs)
    # Phase 1 of a disjoint or mixed run (the backbone alone on the last exit's loss) is
    # not timed: it is costed as the method's dearest stage, a full forward and backward at
    # least; phase 2 of a disjoint run is timed with the backward through the backbone it
    # does not take. Such runs are estimated from above.
    dearest = max(s.seconds_per_step for s in setting.stages)
    seconds = [dearest if p.method_stage is None else
               setting.stages[p.method_stage].seconds_per_step for p in plan]
    epochs = [p.epochs for p in plan]
    train_seconds = sum(e * steps * s for e, s in zip(epochs, seconds))
    post = {"train": train, "heldout": heldout}.get(method.post_training_split(), 0)
    images = training.epochs * heldout + heldout + test + post
    return RunEstimate(spec.run_id, setting, steps, tuple(epochs), train_seconds / 3600,
                       images, images * setting.eval_seconds_per_image / 3600)


def estimate(runs: Sequence[RunSpec]) -> Estimate:
    """Each distinct setting of ``runs`` timed once, then every run's hours."""
    started = time.perf_counter()
    training = runs[0].training
    device = device_here(training.device)
    timed: dict[tuple, SettingTime] = {}
    out = []
    for spec in runs:
        key = (spec.backbone_label, spec.method_label, spec.training.precision,
               spec.training.batch_size)
        if key not in timed:
            try:
                timed[key] = time_setting(spec, device)
            except (ValueError, RuntimeError) as err:  # refused settings, a CUDA error
                raise UsageError(f"--estimate: {spec.backbone_label} / {spec.method_label}: "
                                 f"{err}") from None
        out.append(run_estimate(spec, timed[key]))
    return Estimate(device, torch.get_num_threads(), training.cuda_graphs,
                    untimed_steps(training.cuda_graphs, device), loadavg(),
                    tuple(timed.values()), tuple(out), time.perf_counter() - started)


def lines(e: Estimate) -> list[str]:
    """The estimate as printed: the settings' step times, then the hours per run and for
    the suite."""
    name = f" ({torch.cuda.get_device_name(e.device)})" if e.device.startswith("cuda") else ""
    out = [f"estimate on {e.device}{name}, {e.threads} threads, torch "
           f"{torch.__version__}, cuda_graphs {str(e.cuda_graphs).lower()}, load average "
           f"{', '.join(f'{v:.2f}' for v in e.loadavg)}: per stage the median of {TIMED} "
           f"training steps after {e.warmup} untimed ones, on random batches",
           "setting (backbone / method / precision / batch): seconds per step by stage; "
           "evaluation ms per image"]
    for s in e.settings:
        stages = ", ".join(f"{t.seconds_per_step:.4f}" for t in s.stages)
        out.append(f"  {s.backbone} / {s.method} / {s.precision} / {s.batch_size}: "
                   f"{stages} s/step; evaluation {1000 * s.eval_seconds_per_image:.3f} "
                   "ms/image")
    out.append("run: steps per epoch x epochs per stage; training + evaluation = hours")
    for r in e.runs:
        epochs = "+".join(str(n) for n in r.stage_epochs)
        out.append(f"  {r.run_id}: {r.steps_per_epoch} x {epochs}; {r.train_hours:.4f} + "
                   f"{r.eval_hours:.4f} ({r.eval_images} images) = {r.hours:.4f} h")
    out.append(f"suite: {len(e.runs)} run(s), {e.hours:.4f} hours one after another on this "
               f"machine (the estimate took {e.seconds:.1f} s); left out: data loading from "
               "disk, checkpoints, post-training fits, other load")
    return out


def print_estimate(e: Estimate) -> None:
    print("\n".join(lines(e)))
