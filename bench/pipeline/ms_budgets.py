"""Budgets in milliseconds per image (a suite's ``budgets.ms``), beside those in MMACs.

An image costs the measured cumulative latency of the exit it takes: exit n's mean ms per
image when every image runs to exit n, from ``bench latency`` on the device, batch size,
threads and runtime of the suite's ``budgets.latency`` (latency.json). The thresholds are
then fitted on the held-out split exactly as for MMACs (bench.evaluate.accuracy_at_budgets
with per-exit costs in ms: the q of MSDNet's geometric exit prior solved so that the
held-out mean cost meets the budget) and applied unchanged to the test split. The test
cost reported is the mean of the measured per-exit latencies over the exits taken.

A run without that measurement is measured first, inside ``bench run`` (said in its
progress) where the device is there; on a machine without it, ``bench run`` says which
command measures it. The result is metrics.json's ``budgeted_ms`` (docs/results-format.md);
it is recomputed when the suite's ms budgets or latency settings change, or latency.json
holds a newer measurement of them. Nothing here retrains, and nothing here fails a run: a
problem (a budget outside the exits' latency range) is said and recorded.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch

from bench import store
from bench.config import RunSpec
from bench.evaluate import accuracy_at_budgets, finite_thresholds
from bench.pipeline.latency import Settings, find, measure, merge
from bench.store.latency import exit_costs_ms
from bench.pipeline.restore import restore

SECTION = "budgeted_ms"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def settings(spec: RunSpec) -> Settings:
    lat = spec.latency
    return Settings(device=lat.device, batch_size=lat.batch_size, threads=lat.threads,
                    runtime=lat.runtime, images=lat.images)


def described(spec: RunSpec) -> str:
    lat = spec.latency
    return (f"{lat.runtime} on {lat.device}, batch size {lat.batch_size}, "
            f"{lat.threads} thread(s)")


def command(spec: RunSpec, run: store.Run) -> str:
    """The ``bench latency`` command that measures what the ms budgets need."""
    lat = spec.latency
    images = f" --images {lat.images}" if lat.images else ""
    return (f"python -m bench latency {run.path} --device {lat.device} --batch-sizes "
            f"{lat.batch_size} --threads {lat.threads} --runtime {lat.runtime}{images}")


def _wanted(spec: RunSpec) -> dict:
    """What the section must have been computed for."""
    lat = spec.latency
    return {"requested": list(spec.budgets_ms),
            "latency": {"runtime": lat.runtime, "device": lat.device,
                        "batch_size": lat.batch_size, "threads": lat.threads}}


def outdated(spec: RunSpec, run: store.Run) -> bool:
    """Whether the run's metrics.json lacks the ms budgets the suite asks for (other
    budgets, other latency settings, or a newer measurement of them in latency.json)."""
    if not spec.budgets_ms or not run.has_predictions:
        return False
    section = (run.metrics or {}).get(SECTION)
    if not isinstance(section, dict):
        return True
    wanted = _wanted(spec)
    if section.get("requested") != wanted["requested"]:
        return True
    recorded = section.get("latency") or {}
    if any(recorded.get(k) != v for k, v in wanted["latency"].items()):
        return True
    lat = spec.latency
    current = find(run.latency, lat.runtime, lat.device, lat.batch_size, lat.threads)
    return current is not None and current.get("date") != recorded.get("date")


def out_of_range(budgets: list[float], exit_ms: list[float], where: str) -> str | None:
    """Why a budget cannot be met: below exit 1's latency or above the last exit's."""
    first, last = exit_ms[0], exit_ms[-1]
    for i, b in enumerate(budgets):
        if not first <= b <= last:
            side = "below exit 1's" if b < first else "above the last exit's"
            return (f"budgets.ms[{i}] = {b} ms is {side} measured latency: exit 1 takes "
                    f"{first:.4g} ms per image and exit {len(exit_ms)} (the last) "
                    f"{last:.4g} ms ({where}); give ms budgets between them")
    return None


def fit(preds: dict, exit_ms: list[float], budgets: list[float]) -> list[dict]:
    """metrics.json's ``budgeted_ms.budgets``: thresholds fitted on held-out for each ms
    budget with per-exit costs ``exit_ms``, evaluated on test."""
    val, test = preds["heldout"], preds["test"]
    rows = accuracy_at_budgets(val["logits"].float(), val["targets"], test["logits"].float(),
                               test["targets"], exit_ms, budgets)
    return [{"budget_ms": r["budget"], "accuracy": r["accuracy"], "ms": r["flops"],
             "thresholds": finite_thresholds(r["thresholds"]), "exit_shares": r["exit_shares"],
             "q": r["q"], "heldout_ms": r["heldout_flops"],
             "heldout_accuracy": r["heldout_accuracy"]} for r in rows]


def _measurement(spec: RunSpec, run: store.Run, say: Callable[[str], None]) -> dict | None:
    """latency.json's measurement for the suite's latency settings, measured now if it is
    missing and the device is here; None (said, with the command) otherwise."""
    lat = spec.latency
    found = find(run.latency, lat.runtime, lat.device, lat.batch_size, lat.threads)
    if found is not None:
        return found
    if lat.device.startswith("cuda") and not torch.cuda.is_available():
        say(f"{spec.run_id}: budgets.ms needs the latency measured with {described(spec)}, "
            f"and this machine has no CUDA: run {command(spec, run)} where it has, then "
            "bench run again")
        return None
    say(f"{spec.run_id}: measuring the latency of every exit for budgets.ms "
        f"({described(spec)}), as {command(spec, run)} does")
    result, _ = measure(restore(run.path), settings(spec))
    run.write_latency(merge(run.latency, [result]))
    return result


def settle(spec: RunSpec, run: store.Run, say: Callable[[str], None] = _say) -> None:
    """Give a finished run (predictions saved) the ms budgets the suite asks for, measuring
    the latency first where needed (module doc); a problem is said, never raised."""
    if not outdated(spec, run):
        error = ((run.metrics or {}).get(SECTION) or {}).get("error") if spec.budgets_ms \
            else None
        if error:
            say(f"{spec.run_id}: {error}")
        return
    try:
        measurement = _measurement(spec, run, say)
        if measurement is None:
            return
        exit_ms = exit_costs_ms(measurement)
        preds = run.load_predictions()
        section = _wanted(spec)
        section["latency"].update(date=measurement.get("date"), images=measurement.get(
            "images"), cpu=(measurement.get("machine") or {}).get("cpu"),
            gpu=(measurement.get("machine") or {}).get("gpu"), exit_ms=exit_ms)
        error = out_of_range(list(spec.budgets_ms), exit_ms, described(spec))
        if error is None and len(preds["heldout"]["targets"]) == 0:
            error = "budgets.ms: the run has no held-out split, where thresholds are fitted"
        if error:
            section["error"] = error
            say(f"{spec.run_id}: {error}")
        else:
            section["budgets"] = fit(preds, exit_ms, list(spec.budgets_ms))
        run.write_metrics({**(run.metrics or {}), SECTION: section})
    except Exception as err:  # the run stays finished: say why it has no ms budgets
        say(f"{spec.run_id}: budgets.ms could not be evaluated: {type(err).__name__}: {err}")
