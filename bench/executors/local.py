"""The local executor: this process (or every rank of a torchrun job) goes through the
suite's runs in order and hands each to the pipeline.

Several workers (and torchrun jobs) may run the same suite at once: each run is claimed
with a lock in its folder for its duration (bench.pipeline.claims), so no run is trained
twice and a dead worker's run is resumed by the next one; summary.csv is rebuilt under a
suite-level lock. Under torchrun every rank takes part in every run and rank 0 alone
decides (and broadcasts) what to do with each run and writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from bench import store
from bench.config import RunSpec, Suite
from bench.pipeline import claims, distributed, runner
from bench.pipeline.distributed import Dist
from bench.pipeline.progress import Progress
from bench.pipeline.setup import DataCache


@dataclass
class Outcome:
    failed: int = 0
    busy: int = 0  # runs another worker was running
    trained: list[str] = field(default_factory=list)


def run_suite(suite: Suite, runs: Sequence[RunSpec], folder: store.Suite, data: DataCache,
              dist: Dist, progress: Progress) -> Outcome:
    """Train and evaluate ``runs`` (a selection of the suite's) that are not finished."""
    if dist.is_main:
        folder.write_suite(suite.resolved(), [r.run_id for r in suite.runs])
    ctx = runner.RunContext(folder, data, dist, progress, suite_file=suite.path)
    out = Outcome()
    for i, spec in enumerate(runs, 1):
        run = folder.run(spec.run_id)
        claim, action = None, "skip"
        if dist.is_main:
            claim, action = _decide(spec, run)
        action = distributed.broadcast(action, dist)
        if action != "run":
            out.busy += action == "busy"
            progress.start_run(i, spec, " (done, skipped)" if action == "skip"
                               else " (taken by another worker, skipped)")
            continue
        try:
            progress.start_run(i, spec)
            state = runner.run_one(spec, ctx)
            progress.end_run(state, run.status.get("error") or "" if dist.is_main else "")
            out.failed += state == "failed"
            out.trained.append(spec.run_id)
        finally:
            if claim is not None:
                claim.release()
        if dist.is_main:
            _summary(folder)
    if dist.is_main:
        _summary(folder)
    return out


def _decide(spec: RunSpec, run: store.Run) -> tuple[claims.Claim | None, str]:
    """Rank 0: claim the run and say what to do with it: run, skip (finished) or busy
    (another worker holds it). A finished run gets any evaluation it lacks, from its saved
    predictions."""
    if not run.is_done():
        claim = claims.try_claim(run.lock_path)
        if claim is None:
            return None, "busy"
        if not run.is_done():
            return claim, "run"
        claim.release()  # finished by another worker meanwhile
    if runner.metrics_outdated(spec, run):
        with claims.locked(run.lock_path):
            runner.evaluate_saved(spec, run)
    return None, "skip"


def _summary(folder: store.Suite) -> None:
    with claims.locked(folder.summary_lock_path):
        folder.write_summary()
