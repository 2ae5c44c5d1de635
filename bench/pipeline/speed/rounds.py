"""Timing rounds: several implementations timed in turn, and what their times say.

A round is a function of no arguments that does one unit of timed work (one step on a fixed
batch, or a run of steps over augmented batches) and waits for the device.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from typing import Callable, Sequence

EPOCH_IMAGES = 50_000  # a CIFAR training set
Round = Callable[[], None]


def timed(one_round: Round) -> float:
    """Wall-clock seconds of one call."""
    t0 = time.perf_counter()
    one_round()
    return time.perf_counter() - t0


def alternate(rounds_of: dict[str, Round], rounds: int, warmup: int = 2
              ) -> dict[str, list[float]]:
    """Seconds per call of every round function, each timed once per round in the given
    order and in the reverse order every other round (so that load drifts hit them alike),
    after ``warmup`` untimed rounds."""
    names = list(rounds_of)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = timed(rounds_of[name])
            if r >= warmup:
                times[name].append(t)
    return times


def ratio_to(times: dict[str, list[float]], name: str, base: str) -> tuple[float, float]:
    """(median ratio of ``name`` to ``base``, median of the per-round ratios)."""
    a, b = times[name], times[base]
    return (statistics.median(a) / statistics.median(b),
            statistics.median(x / y for x, y in zip(a, b)))


def summary(times: Sequence[float]) -> dict:
    """Median, min and max of per-step seconds, and how many rounds gave them."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "rounds": len(times)}


def epoch_estimate(round_times: Sequence[float], steps: int, batch_size: int) -> dict:
    """Images/s and the seconds of one 50,000-image epoch, from the median round of
    ``steps`` steps."""
    per_step = statistics.median(round_times) / steps
    epoch_steps = math.ceil(EPOCH_IMAGES / batch_size)
    return {"images_per_s": batch_size / per_step, "epoch_steps": epoch_steps,
            "epoch_s": epoch_steps * per_step, "step_s": per_step}


def loadavg() -> tuple[float, ...]:
    """The machine's 1, 5 and 15 minute load averages (timings on a shared machine mean
    little without them)."""
    return tuple(round(v, 2) for v in os.getloadavg())
