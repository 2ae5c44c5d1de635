"""Where a round's time goes (torch.profiler): device time on a GPU, CPU time on a CPU."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

from bench.pipeline.speed.rounds import Round, timed

PROFILED_ROUNDS = 3  # rounds per implementation behind each op_times figure


@dataclass(frozen=True)
class RoundProfile:
    """One profiled round: torch.profiler's table of the ops with the most self time, the
    round's wall-clock (profiler overhead included) and the time the device was busy (a
    GPU far less busy than the wall-clock is waiting for kernel launches)."""

    table: str
    wall_s: float
    busy_s: float
    busy: str  # what busy_s sums: "device kernels" or "CPU ops"


def _profiled(one_round: Round, device: str, rounds: int = 1):
    """(per-op events, the name of their self-time field, wall-clock seconds) of
    ``rounds`` rounds under torch.profiler."""
    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        wall = timed(lambda: [one_round() for _ in range(rounds)])
    return prof.key_averages(), "self_device_time_total" if cuda else "self_cpu_time_total", wall


def profile_round(one_round: Round, device: str, rows: int = 15) -> RoundProfile:
    """One round profiled: the ``rows`` ops with the most self time, wall and busy time."""
    events, key, wall = _profiled(one_round, device)
    busy_s = sum(getattr(e, key) for e in events) / 1e6
    busy = "device kernels" if key == "self_device_time_total" else "CPU ops"
    return RoundProfile(events.table(sort_by=key, row_limit=rows), wall, busy_s, busy)


def op_times(one_round: Round, device: str, rounds: int = PROFILED_ROUNDS
             ) -> dict[str, float]:
    """Self time per op (ms per round, the mean of ``rounds`` profiled rounds)."""
    events, key, _ = _profiled(one_round, device, rounds)
    return {event.key: getattr(event, key) / 1e3 / rounds for event in events}


def op_times_of(rounds_of: dict[str, Round], device: str, rounds: int = PROFILED_ROUNDS
                ) -> dict[str, dict[str, float]]:
    """:func:`op_times` of every implementation, profiled in turn."""
    return {name: op_times(one_round, device, rounds) for name, one_round in rounds_of.items()}
