"""Training-step speed of a backbone under a method, on random data.

One step is what the trainer does per loaded batch: the method's own ``train_step`` in the
stage being timed (for most methods: forward over the stage's exits, the method's loss,
backward, SGD step; L2W's meta step and its two half-batch updates; IMTA's second stage
with only its new heads training), with SGD lr 0.1, momentum 0.9, weight decay 1e-4, as
the reference. Each of the method's stages is timed in turn (or only ``--stage``).

    python -m bench.speed --backbone msdnet10_cifar --method boostnet --batch-size 64 \
        --steps 10 --warmup 2 --threads 2

prints, per stage, median, min and max seconds per step with the thread count, torch
version and the machine's load average (timings on a shared machine mean little without
it). ``--option KEY=VALUE`` sets a method option (YAML value).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Sequence

import torch
import yaml
from torch import nn

import methods
from bench import backbones
from bench.backbones.common import parameters_per_exit


def stage_context(model: nn.Module, method: methods.Method, stage_index: int
                  ) -> methods.StepContext:
    """The method installed on ``model`` and set up for one of its stages, as the trainer
    sets it up: what trains, the frozen parts' batch-norm policy, SGD over the rest."""
    method.install(model)
    groups = parameters_per_exit(model)  # in the inference configuration, as the trainer
    stage = method.stages(model.num_exits)[stage_index]
    method.configure(model, stage_index)
    method.begin_training(model, next(model.parameters()).device)
    params = methods.stage_parameters(model, groups, stage)
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    methods.train_mode(model, stage.frozen_bn)
    return methods.StepContext(model, model, opt, stage, stage_index,
                               step=methods.plain_step(opt))


def stepper(model: nn.Module, method: methods.Method, *, batch_size: int, num_classes: int,
            stage_index: int = 0, input_size: Sequence[int] | None = None,
            channels_last: bool = False, seed: int = 0, forward: nn.Module | None = None,
            device: str = "cpu") -> Callable[[], None]:
    """One training step of ``method`` in stage ``stage_index`` on a fixed random batch,
    as a function of no arguments (on CUDA it waits for the GPU to finish). ``forward``:
    what to call instead of the model (e.g. its compiled form)."""
    torch.manual_seed(seed)
    input_size = tuple(input_size or model.input_size)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    method.install(model)  # its modules built where the model is, then moved with it
    model.to(device=device, memory_format=memory_format)
    ctx = stage_context(model, method, stage_index)
    if forward is not None:
        ctx.net = forward
    x = torch.randn(batch_size, *input_size).contiguous(memory_format=memory_format).to(device)
    y = torch.randint(0, num_classes, (batch_size,)).to(device)
    cuda = torch.device(device).type == "cuda"

    def step() -> None:
        method.train_step(ctx, x, y)
        if cuda:
            torch.cuda.synchronize()

    return step


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


def time_alternating(step: Callable[[], None], reference: Callable[[], None], *, steps: int,
                     warmup: int = 2) -> tuple[list[float], list[float]]:
    """Seconds of ``steps`` steps of each, taken in turn (reference, step, reference, ...),
    so that both see the same machine load; ``warmup`` untimed pairs first."""
    for _ in range(warmup):
        reference(), step()
    pairs = [(_timed(reference), _timed(step)) for _ in range(steps)]
    return [p[1] for p in pairs], [p[0] for p in pairs]


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
            "loadavg": tuple(round(v, 2) for v in os.getloadavg())}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="msdnet10_cifar", choices=backbones.names())
    p.add_argument("--method", default="boostnet", choices=methods.names())
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option (repeatable)")
    p.add_argument("--stage", type=int, default=None,
                   help="time only this 1-based stage of the method (default: every stage)")
    p.add_argument("--against", default=None, choices=methods.names(), metavar="METHOD",
                   help="time a reference method's steps (its first stage, defaults) in turn "
                        "with the method's and print the median ratio of the pairs")
    p.add_argument("--num-classes", type=int, default=None,
                   help="default: 1000 for ImageNet backbones, else 100")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--channels-last", action="store_true",
                   help="put the model and the input in channels_last memory format (on this "
                        "2-core CPU it is slower than NCHW for msdnet10_cifar at 2 threads)")
    p.add_argument("--compile", action="store_true",
                   help="time the model under torch.compile (the first, compiling step is "
                        "part of --warmup and takes minutes on a CPU)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    num_classes = args.num_classes or (1000 if "imagenet" in args.backbone else 100)
    try:
        method = methods.create(args.method, **parse_options(args.option))
    except ValueError as err:
        p.error(str(err))
    stages = method.stages(backbones.create(args.backbone, num_classes=num_classes).num_exits)
    if args.stage is not None and not 1 <= args.stage <= len(stages):
        p.error(f"--stage: method {args.method!r} has stages 1..{len(stages)}")
    for s in ([args.stage - 1] if args.stage else range(len(stages))):
        times, ref_times = _time_stage(args, num_classes, s)
        where = f" stage {s + 1}/{len(stages)} ({stages[s].name})" if len(stages) > 1 else ""
        info = summary(times, torch.get_num_threads())
        if ref_times:
            ratios = [t / r for t, r in zip(times, ref_times)]
            info["against"] = (f"; {args.against} median {statistics.median(ref_times):.3f} "
                               f"s/step, ratio median {statistics.median(ratios):.2f} "
                               f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
        print_summary(args, where, method.passes(stages[s]).as_dict(), info)
    return 0


def _time_stage(args, num_classes: int, s: int) -> tuple[list[float], list[float] | None]:
    """The method's step times in stage ``s`` (and the reference's, taken in turn)."""
    step = _step_for(args, num_classes, args.method, parse_options(args.option), s)
    if not args.against:
        for _ in range(args.warmup):
            step()
        return [_timed(step) for _ in range(args.steps)], None
    reference = _step_for(args, num_classes, args.against, {}, 0)
    return time_alternating(step, reference, steps=args.steps, warmup=args.warmup)


def _step_for(args, num_classes: int, name: str, options: dict, stage_index: int):
    """A fresh model (seeded) under method ``name``, as a step function."""
    torch.manual_seed(args.seed)
    model = backbones.create(args.backbone, num_classes=num_classes)
    return stepper(model, methods.create(name, **options), batch_size=args.batch_size,
                   num_classes=num_classes, stage_index=stage_index,
                   channels_last=args.channels_last, seed=args.seed, device=args.device,
                   forward=torch.compile(model) if args.compile else None)


def print_summary(args, where: str, passes: dict, info: dict) -> None:
    print(f"{args.backbone} / {args.method}{where}{' (compiled)' if args.compile else ''}, "
          f"batch {args.batch_size}, {args.device}: "
          f"median {info['median_s']:.3f} s/step, min {info['min_s']:.3f}, "
          f"max {info['max_s']:.3f} ({info['steps']} steps); passes per step: "
          f"{passes['forward']:g} forward, {passes['backward']:g} backward, "
          f"{passes['optimizer_steps']} optimizer steps{info.get('against', '')}; "
          f"threads {info['threads']}; torch {info['torch']}; loadavg {info['loadavg']}")


if __name__ == "__main__":
    sys.exit(main())
