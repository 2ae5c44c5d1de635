"""Timing a network that exits early: timers, per-batch statistics, and configurations timed
alternately batch by batch. Pure of runs and files (``bench latency`` reads and writes
those, bench.pipeline.latency).

Times are ms per image: per batch, the batch's time over its size; median and p95 over
every timed batch, and the mean (total time over images, whose inverse is the throughput).
CPU time is wall time (``time.perf_counter``); CUDA time comes from CUDA events recorded
around each batch, read after ``synchronize``.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch


class CpuTimer:
    """Wall time of the work between ``start`` and ``stop`` (seconds)."""

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        return time.perf_counter() - self._t0


class CudaTimer:
    """GPU time between ``start`` and ``stop`` from CUDA events (seconds). ``cuda`` is the
    torch.cuda module (a stand-in in tests). The queue is drained before the start event so
    that earlier work is not counted, and ``stop`` synchronizes before reading the events."""

    def __init__(self, cuda=torch.cuda):
        self.cuda = cuda

    def start(self) -> None:
        self.cuda.synchronize()
        self._begin = self.cuda.Event(enable_timing=True)
        self._end = self.cuda.Event(enable_timing=True)
        self._begin.record()

    def stop(self) -> float:
        self._end.record()
        self.cuda.synchronize()
        return self._begin.elapsed_time(self._end) / 1000.0  # elapsed_time is in ms


def timer_for(device: torch.device) -> CpuTimer | CudaTimer:
    return CudaTimer() if device.type == "cuda" else CpuTimer()


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (linear interpolation between order statistics)."""
    if not values:
        raise ValueError("no values")
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), p / 100.0))


def summarize(ms_per_image: Sequence[float], sizes: Sequence[int]) -> dict:
    """Median and p95 of the per-batch ms per image; the mean is total time over images
    (every image weighs the same), and the throughput its inverse."""
    total_ms = sum(ms * n for ms, n in zip(ms_per_image, sizes))
    mean = total_ms / sum(sizes)
    return {"median_ms": statistics.median(ms_per_image), "p95_ms": percentile(ms_per_image, 95),
            "mean_ms": mean, "images_per_s": 1000.0 / mean if mean > 0 else float("inf"),
            "timed_batches": len(ms_per_image)}


def time_interleaved(runners: Sequence[Callable[[torch.Tensor], object]],
                     batches: list[torch.Tensor], timer, warmup: int, repeats: int
                     ) -> list[dict]:
    """:func:`summarize` per runner. Each runner first gets ``warmup`` untimed batches;
    then, ``repeats`` times over the batches, every runner is timed on a batch before the
    next batch: the runners' times are taken alternately, so a change of the machine's
    load (a shared machine) falls on all of them alike and their ratios stay fair."""
    for run_batch in runners:
        for i in range(warmup):
            run_batch(batches[i % len(batches)])
    ms = [[] for _ in runners]
    for _ in range(repeats):
        for x in batches:
            for k, run_batch in enumerate(runners):
                timer.start()
                run_batch(x)
                ms[k].append(1000.0 * timer.stop() / len(x))
    sizes = [len(x) for x in batches] * repeats
    return [summarize(times, sizes) for times in ms]
