"""Training-step speed of a backbone under a method, on random data.

One step is what the trainer does per loaded batch: the method's own ``train_step`` in the
stage being timed (for most methods: forward over the stage's exits, the method's loss,
backward, SGD step; L2W's meta step and its two half-batch updates; IMTA's second stage
with only its new heads training), with SGD lr 0.1, momentum 0.9, weight decay 1e-4, as
the reference, under ``--precision`` (bench.engine.precision) and, with ``--compile``, compiled as
the trainer compiles (bench.engine.compiling: CUDA graphs on a GPU). Each of the method's stages is
timed in turn (or only ``--stage``).

    python -m bench speed --backbone msdnet10_cifar --method boostnet --batch-size 64 \\
        --threads 2 --rounds 20 [--plain] [--reference DIR] [--against METHOD]

prints, per stage, median, min and max seconds per step with the device, precision, thread
count, torch version and the machine's load average (timings on a shared machine mean
little without it). ``--option KEY=VALUE`` sets a method option (YAML value).

Other steps can be timed in the same process, alternating round by round with ours (the
order reversed every other round) so that load drifts hit them alike: ``--plain`` (our
model with every tensor NCHW, the layout before bench/backbones/layout.py), ``--against
METHOD`` (another method's first stage) and ``--reference DIR`` (the BoostNet reference
implementation from a checkout of SHI-Labs/Boosted-Dynamic-Networks the user provides,
imported from there at run time by bench/pipeline/speed_reference.py; it runs eagerly, under the
same autocast). Ratios are printed as the ratio of the medians and as the median of the
per-round ratios.

``--epoch`` times what an epoch costs instead of a fixed batch: each round is
``--epoch-steps`` consecutive steps on batches drawn, augmented (random crop and flip) and
normalised on the device from uint8 images held there, as the trainer's data does, with one
synchronisation at the end of the round. It prints training images/s and the wall-clock of
one CIFAR-sized epoch (50,000 images: ceil(50000 / batch) steps), extrapolated from the
median round; held-out evaluation is not included.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import yaml
from torch import nn
from torch.profiler import ProfilerActivity, profile

import methods
from bench import backbones
from bench.engine import compiling, precision
from bench.backbones import layout, native
from bench.backbones.common import parameters_per_exit
from bench.data.splits import TensorSplits
from bench.pipeline.speed_reference import reference_step

EPOCH_IMAGES = 50_000  # a CIFAR training set
Step = Callable[[torch.Tensor, torch.Tensor], None]


def stage_context(model: nn.Module, method: methods.Method, stage_index: int,
                  resolved_precision: str = "fp32") -> methods.StepContext:
    """The method installed on ``model`` and set up for one of its stages, as the trainer
    sets it up: what trains, the frozen parts' batch-norm policy, SGD over the rest, the
    precision's autocast and (fp16) gradient scaler, the check that the loss is finite."""
    method.install(model)
    device = next(model.parameters()).device
    groups = parameters_per_exit(model)  # in the inference configuration, as the trainer
    stage = method.stages(model.num_exits)[stage_index]
    method.configure(model, stage_index)
    method.begin_training(model, device)
    params = methods.stage_parameters(model, groups, stage)
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    methods.train_mode(model, stage.frozen_bn)
    scaler = precision.grad_scaler(resolved_precision, device)
    return methods.StepContext(model, model, opt, stage, stage_index,
                               step=precision.optimizer_step(opt, scaler),
                               autocast=precision.autocast(resolved_precision, device),
                               check_finite=check_finite)


def check_finite(loss: torch.Tensor, sample_losses: torch.Tensor) -> None:
    """The trainer's check of every step's loss (on a GPU it waits for the step's forward:
    one host-device synchronisation per step, timed here as the trainer pays it)."""
    if not torch.isfinite(loss.detach()).item():
        raise FloatingPointError(f"training loss is {loss.item()}")


def method_step(model: nn.Module, method: methods.Method, *, stage_index: int = 0,
                channels_last: bool = False, device: str = "cpu", precision_setting: str = "fp32",
                compiled: bool = False, plain: bool = False) -> Step:
    """A function (x, y) -> None taking one training step of ``method`` in stage
    ``stage_index`` (it does not wait for the GPU)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    method.install(model)  # its modules built where the model is, then moved with it
    model.to(device=device, memory_format=memory_format)
    ctx = stage_context(model, method, stage_index, precision.resolve(precision_setting, device))
    if compiled:
        ctx.net = compiling.compile_forward(model, device)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if compiled:
            compiling.begin_step(device)
        with layout.plain_layout() if plain else contextlib.nullcontext():
            method.train_step(ctx, x.contiguous(memory_format=memory_format), y)

    return step


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def stepper(model: nn.Module, method: methods.Method, *, batch_size: int, num_classes: int,
            stage_index: int = 0, input_size: Sequence[int] | None = None,
            channels_last: bool = False, seed: int = 0, device: str = "cpu",
            precision_setting: str = "fp32", compiled: bool = False) -> Callable[[], None]:
    """One training step of ``method`` in stage ``stage_index`` on a fixed random batch,
    as a function of no arguments (on CUDA it waits for the GPU to finish)."""
    torch.manual_seed(seed)
    step = method_step(model, method, stage_index=stage_index, channels_last=channels_last,
                       device=device, precision_setting=precision_setting, compiled=compiled)
    return fixed_round(step, *random_batch(batch_size, input_size or model.input_size,
                                           num_classes, seed, device), device)


def fixed_round(step: Step, x: torch.Tensor, y: torch.Tensor, device: str
                ) -> Callable[[], None]:
    """``step`` on the batch (x, y) as a function of no arguments that waits for the GPU."""
    def fixed() -> None:
        step(x, y)
        synchronize(device)

    return fixed


def random_batch(batch_size: int, input_size: Sequence[int], num_classes: int, seed: int,
                 device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch_size, *input_size, generator=g).to(device),
            torch.randint(0, num_classes, (batch_size,), generator=g).to(device))


def _timed(step: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def time_steps(model: nn.Module, method: methods.Method, *, steps: int, warmup: int = 2,
               **setup) -> list[float]:
    """Seconds of each of ``steps`` timed training steps (see :func:`stepper` for
    ``setup``), after ``warmup`` untimed ones."""
    step = stepper(model, method, **setup)
    for _ in range(warmup):
        step()
    return [_timed(step) for _ in range(steps)]


def alternate(steps: dict[str, Callable[[], None]], rounds: int, warmup: int = 2
              ) -> dict[str, list[float]]:
    """Seconds per call of every step, timed once per round in the given order and in the
    reverse order every other round, after ``warmup`` untimed rounds."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = _timed(steps[name])
            if r >= warmup:
                times[name].append(t)
    return times


def ratio_to(times: dict[str, list[float]], name: str, base: str) -> tuple[float, float]:
    """(median ratio of ``name`` to ``base``, median of the per-round ratios)."""
    a, b = times[name], times[base]
    return (statistics.median(a) / statistics.median(b),
            statistics.median(x / y for x, y in zip(a, b)))


def epoch_data(batch_size: int, steps: int, input_size: Sequence[int], num_classes: int,
               seed: int) -> TensorSplits:
    """Random uint8 images, ``steps`` batches' worth, served as the trainer's in-memory data
    (on-device crop and flip, normalisation)."""
    g = torch.Generator().manual_seed(seed)
    n = batch_size * steps
    images = torch.randint(0, 256, (n, *input_size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    empty = torch.zeros(0, dtype=torch.long)
    return TensorSplits("random", num_classes, train_images=images, train_labels=labels,
                        test_images=images[:1], test_labels=labels[:1],
                        train_idx=torch.arange(n), heldout_idx=empty, test_idx=empty[:0],
                        mean=[0.5] * input_size[0], std=[0.25] * input_size[0])


def epoch_rounds(step: Step, data: TensorSplits, *, batch_size: int, device: str,
                 seed: int) -> Callable[[], None]:
    """A function of no arguments taking one round: a pass over ``data`` in training
    batches (drawn and augmented on ``device``), then a synchronisation."""
    epochs: Iterator[int] = iter(range(sys.maxsize))

    def one_round() -> None:
        for x, y in data.batches("train", batch_size, device=device, epoch=next(epochs),
                                 seed=seed):
            step(x, y)
        synchronize(device)

    return one_round


def epoch_estimate(round_times: Sequence[float], steps: int, batch_size: int) -> dict:
    """Images/s and the seconds of one 50,000-image epoch, from the median round of
    ``steps`` steps."""
    per_step = statistics.median(round_times) / steps
    epoch_steps = math.ceil(EPOCH_IMAGES / batch_size)
    return {"images_per_s": batch_size / per_step, "epoch_steps": epoch_steps,
            "epoch_s": epoch_steps * per_step, "step_s": per_step}


def parse_options(items: Sequence[str]) -> dict:
    """``KEY=VALUE`` pairs, values read as YAML (``layer_norm=true``, ``alpha=0.5``)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option takes KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    return options


def summary(times: Sequence[float], threads: int) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "steps": len(times), "threads": threads, "torch": torch.__version__,
            "loadavg": _loadavg()}


def _loadavg() -> tuple[float, ...]:
    return tuple(round(v, 2) for v in os.getloadavg())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench speed", description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="msdnet10_cifar", choices=backbones.names())
    p.add_argument("--method", default="boostnet", choices=methods.names())
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option (repeatable)")
    p.add_argument("--stage", type=int, default=None,
                   help="time only this 1-based stage of the method (default: every stage)")
    p.add_argument("--against", default=None, choices=methods.names(), metavar="METHOD",
                   help="also time this method's steps (its first stage, defaults), "
                        "alternating with ours, and print the ratios")
    p.add_argument("--reference", type=Path, metavar="DIR",
                   help="also time the BoostNet reference implementation from this checkout "
                        "of SHI-Labs/Boosted-Dynamic-Networks, alternating with ours")
    p.add_argument("--plain", action="store_true",
                   help="also time our model with every tensor NCHW (no CPU channels_last "
                        "layout), alternating with ours")
    p.add_argument("--num-classes", type=int, default=None,
                   help="default: 1000 for ImageNet backbones, else 100")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", "--steps", dest="rounds", type=int, default=10,
                   help="timed rounds (steps, or with --epoch runs of --epoch-steps steps) "
                        "of each timed implementation (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    p.add_argument("--epoch", action="store_true",
                   help="time runs of --epoch-steps steps on batches augmented on the device "
                        "and print images/s and one 50,000-image epoch's wall-clock")
    p.add_argument("--epoch-steps", type=int, default=50,
                   help="steps per round with --epoch (default 50)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--precision", default="fp32", choices=precision.PRECISIONS,
                   help="training.precision: auto is bf16 on GPUs that support it, else fp32 "
                        "(default fp32)")
    p.add_argument("--channels-last", action="store_true",
                   help="put the model and the input in channels_last memory format (on this "
                        "2-core CPU it is slower than NCHW for msdnet10_cifar at 2 threads)")
    p.add_argument("--compile", action="store_true",
                   help="time the model under torch.compile as the trainer compiles it (CUDA "
                        "graphs on a GPU; the compiling steps are part of --warmup and take "
                        "minutes on a CPU)")
    p.add_argument("--profile", action="store_true",
                   help="after timing, profile one more round of ours (torch.profiler) and "
                        "print where the time goes: the ops with the most device time (CPU "
                        "time on a CPU), and the round's wall-clock against the device's "
                        "busy time; with --plain, --against or --reference also a table of "
                        "self time per op of every timed implementation side by side")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for key in ("rounds", "epoch_steps", "batch_size"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')}: expected at least 1")
    num_classes = args.num_classes or (1000 if "imagenet" in args.backbone else 100)
    try:
        options = parse_options(args.option)
        method = methods.create(args.method, **options)
        resolved = precision.resolve(args.precision, args.device)
    except ValueError as err:
        p.error(str(err))
    probe = backbones.create(args.backbone, num_classes=num_classes)  # its shape, its exits
    stages = method.stages(probe.num_exits)
    if args.stage is not None and not 1 <= args.stage <= len(stages):
        p.error(f"--stage: method {args.method!r} has stages 1..{len(stages)}")
    for s in ([args.stage - 1] if args.stage else range(len(stages))):
        try:
            steps = _steps(args, num_classes, s, options, probe.input_size)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        times = alternate(steps, args.rounds, args.warmup)
        where = f" stage {s + 1}/{len(stages)} ({stages[s].name})" if len(stages) > 1 else ""
        print_summary(args, resolved, where, method.passes(stages[s]).as_dict(), times)
        if args.profile:
            print(profile_round(steps["ours"], args.device))
            if len(steps) > 1:
                print(compare_profiles(steps, args.device))
    return 0


def _profiled(one_round: Callable[[], None], device: str, rounds: int = 1):
    """(per-op events, the name of their self-time field, wall-clock seconds) of
    ``rounds`` rounds under torch.profiler: device time on a GPU, CPU time on a CPU."""
    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        wall = _timed(lambda: [one_round() for _ in range(rounds)])
    return prof.key_averages(), "self_device_time_total" if cuda else "self_cpu_time_total", wall


def profile_round(one_round: Callable[[], None], device: str, rows: int = 15) -> str:
    """Where one round's time goes: the ``rows`` ops with the most self time on the device
    (on a CPU: CPU time), then the round's wall-clock beside the time the device was busy
    (a GPU far less busy than the wall-clock is waiting for kernel launches)."""
    events, key, wall = _profiled(one_round, device)
    busy_s = sum(getattr(e, key) for e in events) / 1e6
    table = events.table(sort_by=key, row_limit=rows)
    busy = "device kernels" if key == "self_device_time_total" else "CPU ops"
    return (f"{table}\nprofiled round: wall-clock {wall:.4f} s (profiler overhead included), "
            f"{busy} {busy_s:.4f} s")


def op_times(one_round: Callable[[], None], device: str, rounds: int = 3) -> dict[str, float]:
    """Self time per op (ms per round, the mean of ``rounds`` profiled rounds): device time
    on a GPU, CPU time on a CPU."""
    events, key, _ = _profiled(one_round, device, rounds)
    return {event.key: getattr(event, key) / 1e3 / rounds for event in events}


def compare_profiles(steps: dict[str, Callable[[], None]], device: str, rows: int = 20,
                     rounds: int = 3) -> str:
    """Where each timed implementation's time goes, side by side: self time per op in ms
    per round (profiled in turn, ``rounds`` rounds each), the ``rows`` ops with the largest
    time in any column, then every op's total."""
    times = {name: op_times(step, device, rounds) for name, step in steps.items()}
    ops = sorted(set().union(*times.values()),
                 key=lambda op: -max(t.get(op, 0.0) for t in times.values()))
    width = max(12, *(len(name) + 2 for name in times))
    lines = [f"self time per op, ms per round (mean of {rounds} profiled rounds each)",
             f"{'op':<48}" + "".join(f"{name:>{width}}" for name in times)]
    for op in ops[:rows]:
        lines.append(f"{op[:47]:<48}" + "".join(f"{t.get(op, 0.0):>{width}.1f}"
                                                for t in times.values()))
    lines.append(f"{'total (all ops)':<48}" + "".join(f"{sum(t.values()):>{width}.1f}"
                                                      for t in times.values()))
    return "\n".join(lines)


def _steps(args, num_classes: int, s: int, options: dict, input_size: Sequence[int]
           ) -> dict[str, Callable[[], None]]:
    """The timed implementations in stage ``s``, each a round as a function of no
    arguments: ours, then those ``--plain``, ``--against`` and ``--reference`` add."""
    steps = {"ours": _ours(args, num_classes, args.method, options, s, input_size)}
    if args.plain:
        steps["ours, NCHW"] = _ours(args, num_classes, args.method, options, s, input_size,
                                    plain=True)
    if args.against:
        steps[args.against] = _ours(args, num_classes, args.against, {}, 0, input_size)
    if args.reference:
        steps["reference"] = _as_round(args, num_classes, _reference(args, num_classes, options),
                                       input_size)
    return steps


def _ours(args, num_classes: int, name: str, options: dict, stage_index: int,
          input_size: Sequence[int], plain: bool = False) -> Callable[[], None]:
    """A fresh model (seeded) under method ``name``, as a round."""
    torch.manual_seed(args.seed)
    model = backbones.create(args.backbone, num_classes=num_classes)
    step = method_step(model, methods.create(name, **options), stage_index=stage_index,
                       channels_last=args.channels_last, device=args.device,
                       precision_setting=args.precision, compiled=args.compile, plain=plain)
    return _as_round(args, num_classes, step, input_size)


def _reference(args, num_classes: int, options: dict) -> Step:
    """The reference's step on ``args.device``, under the same autocast as ours."""
    model = backbones.create(args.backbone, num_classes=num_classes)
    method = methods.create(args.method, **options)
    step = reference_step(args.reference, model, method, args.seed, device=args.device)
    autocast = precision.autocast(precision.resolve(args.precision, args.device), args.device)

    def under_autocast(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast:
            step(x, y)

    return under_autocast


def _as_round(args, num_classes: int, step: Step, input_size: Sequence[int]
              ) -> Callable[[], None]:
    """A step as one timed round: on a fixed random batch, or with ``--epoch`` a run of
    ``--epoch-steps`` steps over freshly augmented batches."""
    if args.epoch:
        data = epoch_data(args.batch_size, args.epoch_steps, input_size, num_classes,
                          args.seed)
        return epoch_rounds(step, data, batch_size=args.batch_size, device=args.device,
                            seed=args.seed)
    return fixed_round(step, *random_batch(args.batch_size, input_size, num_classes,
                                           args.seed, args.device), args.device)


def print_summary(args, resolved: str, where: str, passes: dict,
                  times: dict[str, list[float]]) -> None:
    per_step = args.epoch_steps if args.epoch else 1
    ours = summary([t / per_step for t in times["ours"]], torch.get_num_threads())
    print(f"{args.backbone} / {args.method}{where}{' (compiled)' if args.compile else ''}, "
          f"batch {args.batch_size}, {args.device}, {resolved}: "
          f"median {ours['median_s']:.4f} s/step, min {ours['min_s']:.4f}, "
          f"max {ours['max_s']:.4f} ({ours['steps']} rounds"
          f"{f' of {per_step} steps' if args.epoch else ''}); passes per step: "
          f"{passes['forward']:g} forward, {passes['backward']:g} backward, "
          f"{passes['optimizer_steps']} optimizer steps{_epoch_text(args, times['ours'])}; "
          f"threads {ours['threads']}; torch {ours['torch']}; loadavg {ours['loadavg']}"
          f"{_batch_norm_text(args.device)}")
    for name, t in times.items():
        if name == "ours":
            continue
        other = summary([v / per_step for v in t], ours["threads"])
        of_medians, per_round = ratio_to(times, "ours", name)
        print(f"  {name}: median {other['median_s']:.4f} s/step, min {other['min_s']:.4f}, "
              f"max {other['max_s']:.4f}{_epoch_text(args, t)}; ours / {name}: "
              f"{of_medians:.3f} (ratio of medians), {per_round:.3f} (median of per-round "
              f"ratios)")


def _batch_norm_text(device: str) -> str:
    """On a CPU, which version of the channels_last batch norm ran (bench.backbones.native)."""
    if torch.device(device).type != "cpu":
        return ""
    return "; batch norm: " + native.implementation()


def _epoch_text(args, round_times: Sequence[float]) -> str:
    if not args.epoch:
        return ""
    e = epoch_estimate(round_times, args.epoch_steps, args.batch_size)
    return (f"; {e['images_per_s']:.0f} images/s, one epoch of {EPOCH_IMAGES:,} images "
            f"({e['epoch_steps']} steps) {e['epoch_s']:.1f} s (extrapolated from the median "
            f"round)")


if __name__ == "__main__":
    sys.exit(main())
