"""``bench speed``: time a method's training steps (bench.pipeline.speed) and print, per
stage, median, min and max seconds per step with the device, precision, thread count,
torch version and the machine's load average; then every implementation timed beside
ours with the ratios, and with ``--profile`` where the time goes."""
from __future__ import annotations

from typing import Sequence

import torch
import yaml

from bench.config import OptimizerConfig
from bench.errors import UsageError
from bench.pipeline.speed import Measurement, Settings, StageTiming, measure
from bench.pipeline.speed.measure import OURS
from bench.pipeline.speed.profiling import PROFILED_ROUNDS
from bench.pipeline.speed.rounds import EPOCH_IMAGES, epoch_estimate, ratio_to, summary


def parse_options(items: Sequence[str]) -> dict:
    """``KEY=VALUE`` pairs, values read as YAML (``layer_norm=true``, ``alpha=0.5``)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--option takes KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    return options


def settings(args) -> Settings:
    """The command line's settings; the optimizer is the suites' default one (the paper's
    SGD), as a suite without a training.optimizer section trains with."""
    return Settings(
        optimizer=OptimizerConfig(),
        backbone=args.backbone, method=args.method, options=parse_options(args.option),
        stage=args.stage, against=args.against, reference=args.reference, plain=args.plain,
        dataset=args.dataset, num_classes=args.num_classes, batch_size=args.batch_size,
        rounds=args.rounds, warmup=args.warmup, epoch=args.epoch, epoch_steps=args.epoch_steps,
        precision=args.precision, channels_last=args.channels_last, compile=args.compile,
        cuda_graphs=args.cuda_graphs, profile=args.profile, device=args.device, seed=args.seed)


def main(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(settings(args))
    for timing in result.stages:
        print("\n".join(render(result, timing)))
    return 0


def render(result: Measurement, timing: StageTiming) -> list[str]:
    """The lines of one stage: ours, each other implementation with its ratios, and the
    profile where one was taken."""
    s = result.settings
    per_step = timing.steps_per_round
    ours = summary([t / per_step for t in timing.times[OURS]])
    where = (f" stage {timing.stage}/{timing.stages} ({timing.name})"
             if timing.stages > 1 else "")
    passes = timing.passes
    lines = [
        f"{s.backbone} / {s.method}{where}{' (compiled)' if s.compile else ''}"
        f"{' (CUDA graphs)' if s.cuda_graphs else ''}, "
        f"batch {s.batch_size}, {s.device}, {result.precision}: "
        f"median {ours['median_s']:.4f} s/step, min {ours['min_s']:.4f}, "
        f"max {ours['max_s']:.4f} ({ours['rounds']} rounds"
        f"{f' of {per_step} steps' if s.epoch else ''}); passes per step: "
        f"{passes['forward']:g} forward, {passes['backward']:g} backward, "
        f"{passes['optimizer_steps']} optimizer steps{_epoch_text(s, timing.times[OURS])}; "
        f"threads {timing.threads}; torch {torch.__version__}; loadavg {timing.loadavg}"]
    for name, t in timing.times.items():
        if name == OURS:
            continue
        other = summary([v / per_step for v in t])
        of_medians, per_round = ratio_to(timing.times, OURS, name)
        lines.append(
            f"  {name}: median {other['median_s']:.4f} s/step, min {other['min_s']:.4f}, "
            f"max {other['max_s']:.4f}{_epoch_text(s, t)}; ours / {name}: "
            f"{of_medians:.3f} (ratio of medians), {per_round:.3f} (median of per-round "
            f"ratios)")
    if timing.profile is not None:
        p = timing.profile
        lines.append(f"{p.table}\nprofiled round: wall-clock {p.wall_s:.4f} s (profiler "
                     f"overhead included), {p.busy} {p.busy_s:.4f} s")
    if timing.op_times is not None:
        lines.append(op_table(timing.op_times))
    return lines


def op_table(times: dict[str, dict[str, float]], rows: int = 20,
             rounds: int = PROFILED_ROUNDS) -> str:
    """Self time per op of every implementation side by side (ms per round): the ``rows``
    ops with the largest time in any column, then every op's total."""
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


def _epoch_text(s: Settings, round_times: Sequence[float]) -> str:
    if not s.epoch:
        return ""
    e = epoch_estimate(round_times, s.epoch_steps, s.batch_size)
    return (f"; {e['images_per_s']:.0f} images/s, one epoch of {EPOCH_IMAGES:,} images "
            f"({e['epoch_steps']} steps) {e['epoch_s']:.1f} s (extrapolated from the median "
            f"round)")
