"""latency.json's measurements: several are kept, one per runtime, device, batch size and
threads (the newest of each); the file's top-level keys are the first measurement of the
last ``bench latency`` (the file's form before several were kept, which is read as one
measurement of runtime pytorch). docs/results-format.md lists the keys."""
from __future__ import annotations

KEY = ("runtime", "device", "batch_size", "threads")  # one measurement per key is kept


def measurements(latency: dict | None) -> list[dict]:
    """Every measurement a latency.json holds."""
    if not isinstance(latency, dict):
        return []
    kept = latency.get("measurements")
    if isinstance(kept, list):
        return [m for m in kept if isinstance(m, dict)]
    if "exits" in latency:
        return [{"runtime": "pytorch", **latency}]
    return []


def key(measurement: dict) -> tuple:
    """(runtime, device, batch size, threads) of a measurement."""
    return tuple(measurement.get(k, "pytorch" if k == "runtime" else None) for k in KEY)


def merge(old: dict | None, new: list[dict]) -> dict:
    """latency.json after new measurements: the old ones whose key no new one has, then the
    new ones; the first new one's keys on top."""
    fresh = {key(m) for m in new}
    kept = [m for m in measurements(old) if key(m) not in fresh] + list(new)
    return {**new[0], "measurements": kept}


def find(latency: dict | None, runtime: str, device: str, batch_size: int, threads: int
         ) -> dict | None:
    """The measurement with that runtime, device, batch size and threads, or None."""
    want = (runtime, device, batch_size, threads)
    return next((m for m in measurements(latency) if key(m) == want), None)


def exit_costs_ms(measurement: dict) -> list[float]:
    """The cost in ms per image of leaving at each exit, as budgets in ms use it: the
    measured cumulative latency of exits 1..n, made non-decreasing (a running maximum).
    Reaching exit n runs everything exit n-1 ran, so its true cost is never lower; a
    measured inversion is timing noise (another process on the machine, a cache warming
    up), and the threshold fit needs cumulative costs."""
    costs, highest = [], 0.0
    for e in measurement["exits"]:
        highest = max(highest, float(e["mean_ms"]))
        costs.append(highest)
    return costs
