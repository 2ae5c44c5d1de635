"""The local executor: this process (or every rank of a torchrun job) goes through the
suite's runs in order, asks the pipeline what each needs (bench.pipeline.plan) and trains
the ones it claimed.

Several workers (and torchrun jobs) may run the same suite at once: each run is claimed
with a lock in its folder for its duration (bench.pipeline.claims), so no run is trained
twice and a dead worker's run is resumed by the next one; summary.csv is rebuilt under a
suite-level lock. Under torchrun every rank takes part in every run and rank 0 alone
plans (and broadcasts what to do with each run) and writes.
"""
from __future__ import annotations

from typing import Sequence

from bench import store
from bench.config import RunSpec, Suite
from bench.executors.board import ENDED
from bench.executors.common import Outcome, Result, say_stale, train
from bench.pipeline import distributed, runner
from bench.pipeline.distributed import Dist
from bench.pipeline.plan import (BUSY, FINISHED, STALE, TRAIN, one_line, plan, prepare_folder,
                                 rebuild_summary, say)
from bench.pipeline.progress import Progress
from bench.pipeline.setup import DataCache

def run_suite(suite: Suite, runs: Sequence[RunSpec], folder: store.Suite, data: DataCache,
              dist: Dist, progress: Progress, code: dict, rerun_stale: bool = False
              ) -> Outcome:
    """Train and evaluate ``runs`` (a selection of the suite's) that are not finished;
    ``code`` is the current code's fingerprint (bench.fingerprint.fingerprint).

    A run that fails (any exception, on any rank) is recorded as failed in its status.json
    and named in one line; the others still run. KeyboardInterrupt and SystemExit stop
    everything (claims are released, the run resumes next time)."""
    distributed.control_group(dist)  # every rank, before any run (see distributed.agree)
    if dist.is_main:
        prepare_folder(suite, folder)
    ctx = runner.RunContext(folder, data, dist, code, progress, suite_file=suite.path)
    out = Outcome()
    for i, spec in enumerate(runs, 1):
        result = _one(i, spec, ctx, rerun_stale)
        out.add(result)
        if result.action == TRAIN and dist.is_main:
            rebuild_summary(folder)
    if dist.is_main:
        rebuild_summary(folder)
    return out


def _one(i: int, spec: RunSpec, ctx: runner.RunContext, rerun_stale: bool) -> Result:
    """Plan (rank 0, broadcast) and train the run if the plan claimed it; the claim is
    released when the run ends."""
    dist, progress, run = ctx.dist, ctx.progress, ctx.suite.run(spec.run_id)
    p = plan(spec, run, ctx.code["sha256"], rerun_stale) if dist.is_main else None
    try:
        action, error = distributed.broadcast((p.action, p.error) if p else None, dist)
        if action in (FINISHED, BUSY):
            progress.start_run(i, spec, f" ({ENDED[action]})")
        if action == STALE and dist.is_main:
            say_stale(run)
        if action != TRAIN:  # (a failed plan was said by the pipeline)
            return Result(spec.run_id, action, error=error)
        progress.start_run(i, spec)
        result = train(spec, ctx)
        progress.end_run(result.state, one_line(result.error))
        if result.state == "failed" and dist.is_main and not progress.enabled:
            say(f"{spec.run_id} failed: {one_line(result.error)}")
        return result
    finally:
        if p is not None:
            p.release()
