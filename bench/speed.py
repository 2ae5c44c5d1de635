"""Training-step speed of a backbone under a method, on random data.

One step is what the trainer does per mini-batch: forward over all exits, the method's
loss, backward, SGD step (lr 0.1, momentum 0.9, weight decay 1e-4, as the reference).

    python -m bench speed --backbone msdnet10_cifar --method boostnet --batch-size 64 \\
        --threads 2 --rounds 20 [--reference DIR] [--plain]

prints median, min and max seconds per step with the thread count, torch version and the
machine's load average (timings on a shared machine mean little without it). With
``--reference DIR`` (a checkout of SHI-Labs/Boosted-Dynamic-Networks, imported from there
at run time: bench/speed_reference.py) and ``--plain`` (our model with every tensor NCHW,
the layout before bench/backbones/layout.py), those steps are timed in the same process,
alternating step by step with ours (the order reversed every other round), so that load
drifts hit all of them alike; the ratio to the reference is printed as the ratio of the
medians and as the median of the per-round ratios.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

import methods
from bench import backbones
from bench.backbones import layout
from bench.speed_reference import reference_step


def method_loss(name: str, model: nn.Module | None = None) -> Callable:
    """The loss of ``methods.create(name)``, after letting it prepare ``model`` (e.g. switch
    on BoostNet's gradient rescaling)."""
    method = methods.create(name)
    if model is not None:
        method.prepare(model)
    return method.loss


def training_step(model: nn.Module, loss_fn: Callable, *, channels_last: bool = False,
                  plain: bool = False) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """A function (x, y) -> None taking one SGD step of ``model`` (train mode)."""
    model.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with layout.plain_layout() if plain else contextlib.nullcontext():
            loss = loss_fn(model(x.contiguous(memory_format=memory_format)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


def _batch(batch_size: int, input_size: Sequence[int], num_classes: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch_size, *input_size, generator=g),
            torch.randint(0, num_classes, (batch_size,), generator=g))


def time_steps(model: nn.Module, loss_fn: Callable, *, batch_size: int, steps: int,
               warmup: int = 2, num_classes: int, input_size: Sequence[int] | None = None,
               channels_last: bool = False, seed: int = 0) -> list[float]:
    """Seconds of each of ``steps`` timed training steps, after ``warmup`` untimed ones."""
    torch.manual_seed(seed)
    step = training_step(model, loss_fn, channels_last=channels_last)
    x, y = _batch(batch_size, input_size or model.input_size, num_classes, seed)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step(x, y)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def alternate(steps: dict[str, Callable[[], None]], rounds: int, warmup: int = 2
              ) -> dict[str, list[float]]:
    """Seconds per call of every step, timed once per round in the given order and in the
    reverse order every other round, after ``warmup`` untimed rounds."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            steps[name]()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def summary(times: Sequence[float], threads: int) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "steps": len(times), "threads": threads, "torch": torch.__version__,
            "loadavg": _loadavg()}


def _loadavg() -> tuple[float, ...]:
    return tuple(round(v, 2) for v in os.getloadavg())


def ratio_to(times: dict[str, list[float]], name: str, base: str) -> tuple[float, float]:
    """(median ratio of ``name`` to ``base``, median of the per-round ratios)."""
    a, b = times[name], times[base]
    return (statistics.median(a) / statistics.median(b),
            statistics.median(x / y for x, y in zip(a, b)))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench speed", description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="msdnet10_cifar", choices=backbones.names())
    p.add_argument("--method", default="boostnet")
    p.add_argument("--num-classes", type=int, default=None,
                   help="default: 1000 for ImageNet backbones, else 100")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps (alias of --rounds)")
    p.add_argument("--rounds", type=int, default=10,
                   help="timed steps of each implementation (default 10)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--reference", type=Path, metavar="DIR",
                   help="also time the BoostNet reference implementation from this checkout "
                        "of SHI-Labs/Boosted-Dynamic-Networks, alternating with ours")
    p.add_argument("--plain", action="store_true",
                   help="also time our model with every tensor NCHW (no CPU channels_last "
                        "layout), alternating with ours")
    p.add_argument("--channels-last", action="store_true",
                   help="put the model and the input in channels_last memory format")
    p.add_argument("--compile", action="store_true",
                   help="time the model under torch.compile (the first, compiling step is "
                        "part of --warmup and takes minutes on a CPU)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.steps or args.rounds
    num_classes = args.num_classes or (1000 if "imagenet" in args.backbone else 100)

    def ours(plain: bool = False) -> Callable[[torch.Tensor, torch.Tensor], None]:
        torch.manual_seed(args.seed)
        model = backbones.create(args.backbone, num_classes=num_classes)
        method = methods.create(args.method)
        method.prepare(model)
        if args.compile:
            model = torch.compile(model)
        return training_step(model, method.loss, channels_last=args.channels_last,
                             plain=plain)

    steps = {"ours": ours()}
    if args.plain:
        steps["ours, NCHW"] = ours(plain=True)
    if args.reference:
        model = backbones.create(args.backbone, num_classes=num_classes)
        try:
            steps["reference"] = reference_step(args.reference, model,
                                                methods.create(args.method), args.seed)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    x, y = _batch(args.batch_size, backbones.create(args.backbone).input_size, num_classes,
                  args.seed)
    load_before = _loadavg()
    times = alternate({k: (lambda s=s: s(x, y)) for k, s in steps.items()}, rounds,
                      args.warmup)
    threads = torch.get_num_threads()
    print(f"{args.backbone} / {args.method}{' (compiled)' if args.compile else ''}, "
          f"batch {args.batch_size}, {threads} threads, {rounds} rounds"
          f"{' alternating' if len(steps) > 1 else ''}; torch {torch.__version__}; "
          f"loadavg {load_before} before, {_loadavg()} after")
    for name, t in times.items():
        s = summary(t, threads)
        print(f"  {name:12s} median {s['median_s']:.3f} s/step, min {s['min_s']:.3f}, "
              f"max {s['max_s']:.3f}")
    for name in times:
        if name != "reference" and "reference" in times:
            of_medians, per_round = ratio_to(times, name, "reference")
            print(f"  {name} / reference: {of_medians:.3f} (ratio of medians), "
                  f"{per_round:.3f} (median of per-round ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
