"""Which per-exit thresholds an exported model uses for a budget, in MMACs or in measured
milliseconds per image. Every threshold was fitted on the run's held-out split:

- a fixed budget of the run's suite uses the thresholds its evaluation fitted for it
  (``budgets``: MMACs; ``budgets_ms``: ms, fitted with the per-exit latency it names);
- any other budget uses the point of the run's q curve with the largest mean cost on the
  held-out split that does not exceed it. In MMACs that cost is ``heldout_mmacs``; in ms it
  is the point's held-out exit shares times the measured cumulative latency of each exit
  (``latency``: what ``bench latency`` measured, per runtime, device, batch size, threads);
- no budget runs every image to the last exit.

An ms budget below exit 1's measured latency or above the last exit's is refused, naming
both: the first is out of reach, the second asks for no early exit (``budget_ms=None``).
"""
from __future__ import annotations

import math

from bench.errors import UsageError
from bench.evaluate import finite_thresholds

RELATIVE_TOLERANCE = 1e-6  # a budget this close to a fixed one is that budget
LATENCY_KEY = ("runtime", "device", "batch_size", "threads")


class ExportError(UsageError, ValueError):
    """A file that is no export of this harness, or a budget it cannot serve (a ValueError;
    the CLI says it in one line, exit code 2)."""


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), 1.0)


def describe(measurement: dict) -> str:
    """'onnxruntime, cpu, batch 1, 1 thread(s)'."""
    return (f"{measurement.get('runtime', 'pytorch')}, {measurement.get('device')}, batch "
            f"{measurement.get('batch_size')}, {measurement.get('threads')} thread(s)")


class OperatingPoints:
    """The thresholds of an export (docs/deploy.md's keys ``exit_mmacs``, ``budgets``,
    ``budgets_ms``, ``curve``, ``latency``) for a model that runs on ``runtime``."""

    def __init__(self, payload: dict, runtime: str):
        self.runtime = runtime
        self.exit_mmacs = [float(m) for m in payload["exit_mmacs"]]
        self.fixed = [{**b, "thresholds": [float(t) for t in b["thresholds"]]}
                      for b in payload["budgets"]]
        self.fixed_ms = [{**b, "thresholds": [float(t) for t in b["thresholds"]]}
                         for b in payload.get("budgets_ms") or []]
        self.curve = sorted(payload["curve"], key=lambda c: c["heldout_mmacs"])
        self.latency = list(payload.get("latency") or [])

    @property
    def budgets(self) -> list[float]:
        """The run's fixed budgets (MMACs per image)."""
        return [float(b["budget_mmacs"]) for b in self.fixed]

    def thresholds(self, budget_mmacs: float | None = None, budget_ms: float | None = None,
                   batch_size: int | None = None) -> list[float]:
        """Per-exit thresholds for a mean budget in MMACs or in ms per image (module doc);
        ``batch_size`` picks the latency measured at that batch size."""
        if budget_mmacs is not None and budget_ms is not None:
            raise ExportError("give budget_mmacs or budget_ms, not both")
        if budget_ms is not None:
            return self._for_ms(float(budget_ms), batch_size)
        if budget_mmacs is None:
            return finite_thresholds([math.inf] * len(self.exit_mmacs))  # all to the last
        budget = float(budget_mmacs)
        for b in self.fixed:
            if _same(budget, b["budget_mmacs"]):
                return b["thresholds"]
        fits = [c for c in self.curve if c["heldout_mmacs"] <= budget]
        if not fits:
            low = self.curve[0]["heldout_mmacs"] if self.curve else self.exit_mmacs[-1]
            raise ExportError(f"budget_mmacs={budget} is below the cheapest operating point "
                              f"of this model ({low:.4g} MMACs per image on the held-out "
                              f"split); fixed budgets: {self.budgets}")
        return [float(t) for t in fits[-1]["thresholds"]]

    # -- milliseconds -------------------------------------------------------------------
    def measurement(self, batch_size: int | None = None) -> dict:
        """The latency measured for this model's runtime (at ``batch_size``; without it,
        the only batch size measured). Several at one batch size: the CPU's first, then
        the newest."""
        mine = [m for m in self.latency if m.get("runtime", "pytorch") == self.runtime]
        if not mine:
            raise ExportError(f"no latency was measured with {self.runtime} for this run, so "
                              f"budget_ms has no per-exit costs: run python -m bench latency "
                              f"RUN_DIR --runtime {self.runtime} --batch-sizes 1, then export "
                              "the run again")
        sizes = sorted({int(m["batch_size"]) for m in mine})
        if batch_size is None and len(sizes) > 1:
            raise ExportError(f"latency was measured with {self.runtime} at batch sizes "
                              f"{sizes}: give batch_size= to say which one budget_ms means")
        size = sizes[0] if batch_size is None else int(batch_size)
        at = [m for m in mine if int(m["batch_size"]) == size]
        if not at:
            raise ExportError(f"no latency was measured with {self.runtime} at batch size "
                              f"{size} (measured: {sizes}); run python -m bench latency "
                              f"RUN_DIR --runtime {self.runtime} --batch-sizes {size} and "
                              "export the run again")
        cpu = [m for m in at if m.get("device") == "cpu"]
        return max(cpu or at, key=lambda m: str(m.get("date", "")))

    def _for_ms(self, budget: float, batch_size: int | None) -> list[float]:
        m = self.measurement(batch_size)
        exit_ms = [float(v) for v in m["exit_ms"]]
        if budget < exit_ms[0] or budget > exit_ms[-1]:
            side = "below exit 1's" if budget < exit_ms[0] else "above the last exit's"
            raise ExportError(
                f"budget_ms={budget} is {side} measured latency: exit 1 takes "
                f"{exit_ms[0]:.4g} ms per image and exit {len(exit_ms)} (the last) "
                f"{exit_ms[-1]:.4g} ms ({describe(m)}); give a budget between them, or "
                "budget_ms=None to run every image to the last exit")
        key = tuple(m.get(k) for k in LATENCY_KEY)
        for b in self.fixed_ms:
            if _same(budget, b["budget_ms"]) and tuple(
                    (b.get("latency") or {}).get(k) for k in LATENCY_KEY) == key:
                return b["thresholds"]
        costs = [(self._heldout_ms(c, exit_ms), c) for c in self.curve]
        fits = [(cost, c) for cost, c in costs if cost <= budget]
        if not fits:
            low = min(cost for cost, _ in costs)
            raise ExportError(f"budget_ms={budget} is below the cheapest operating point of "
                              f"this model ({low:.4g} ms per image on the held-out split, "
                              f"{describe(m)})")
        return [float(t) for t in max(fits, key=lambda fc: fc[0])[1]["thresholds"]]

    @staticmethod
    def _heldout_ms(point: dict, exit_ms: list[float]) -> float:
        shares = point.get("heldout_exit_shares")
        if shares is None:
            raise ExportError("this export's q curve has no held-out exit shares (exported "
                              "before ms budgets existed): export the run again")
        return float(sum(s * t for s, t in zip(shares, exit_ms)))
