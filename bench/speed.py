"""Training-step speed of a backbone under a method, on random data.

One step is what the trainer does per mini-batch: forward over all exits, the method's
loss, backward, SGD step (lr 0.1, momentum 0.9, weight decay 1e-4, as the reference).

    python -m bench.speed --backbone msdnet10_cifar --method boostnet --batch-size 64 \
        --steps 10 --warmup 2 --threads 2

prints median, min and max seconds per step with the thread count, torch version and the
machine's load average (timings on a shared machine mean little without it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Sequence

import torch
from torch import nn

import methods
from bench import backbones


def method_loss(name: str, model: nn.Module | None = None) -> Callable:
    """The loss of ``methods.create(name)``, after letting it prepare ``model`` (e.g. switch
    on BoostNet's gradient rescaling)."""
    method = methods.create(name)
    if model is not None:
        method.prepare(model)
    return method.loss


def time_steps(model: nn.Module, loss_fn: Callable, *, batch_size: int, steps: int,
               warmup: int = 2, num_classes: int, input_size: Sequence[int] | None = None,
               channels_last: bool = False, seed: int = 0) -> list[float]:
    """Seconds of each of ``steps`` timed training steps, after ``warmup`` untimed ones."""
    torch.manual_seed(seed)
    input_size = tuple(input_size or model.input_size)
    model.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch_size, *input_size).contiguous(memory_format=memory_format)
    y = torch.randint(0, num_classes, (batch_size,))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def summary(times: Sequence[float], threads: int) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "steps": len(times), "threads": threads, "torch": torch.__version__,
            "loadavg": tuple(round(v, 2) for v in os.getloadavg())}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="msdnet10_cifar", choices=backbones.names())
    p.add_argument("--method", default="boostnet")
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
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    num_classes = args.num_classes or (1000 if "imagenet" in args.backbone else 100)
    torch.manual_seed(args.seed)
    model = backbones.create(args.backbone, num_classes=num_classes)
    loss_fn = method_loss(args.method, model)
    if args.compile:
        model = torch.compile(model)
    times = time_steps(model, loss_fn, batch_size=args.batch_size, steps=args.steps,
                       warmup=args.warmup, num_classes=num_classes,
                       channels_last=args.channels_last, seed=args.seed)
    s = summary(times, torch.get_num_threads())
    print(f"{args.backbone} / {args.method}{' (compiled)' if args.compile else ''}, "
          f"batch {args.batch_size}: "
          f"median {s['median_s']:.3f} s/step, min {s['min_s']:.3f}, max {s['max_s']:.3f} "
          f"({s['steps']} steps); threads {s['threads']}; torch {s['torch']}; "
          f"loadavg {s['loadavg']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
