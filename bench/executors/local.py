"""The local executor: this process (or every rank of a torchrun job) goes through the
suite's runs in order and hands each to the pipeline.

Several workers (and torchrun jobs) may run the same suite at once: each run is claimed
with a lock in its folder for its duration (bench.pipeline.claims), so no run is trained
twice and a dead worker's run is resumed by the next one; summary.csv is rebuilt under a
suite-level lock. Under torchrun every rank takes part in every run and rank 0 alone
decides (and broadcasts) what to do with each run and writes. What is decided for a run
(finished, stale, taken, resumed) is bench.executors.common's, shared with the other
executors.
"""
from __future__ import annotations

from typing import Sequence

from bench import store
from bench.config import RunSpec, Suite
from bench.executors.common import (SKIPPED, Outcome, decide, log, one_line, prepare_folder,
                                    rebuild_summary)
from bench.fingerprint import short
from bench.pipeline import distributed, runner
from bench.pipeline.distributed import Dist
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
        ran = _one(i, spec, folder.run(spec.run_id), ctx, out, rerun_stale)
        if ran and dist.is_main:
            rebuild_summary(folder)
    if dist.is_main:
        rebuild_summary(folder)
    return out


def _one(i: int, spec: RunSpec, run: store.Run, ctx: runner.RunContext, out: Outcome,
         rerun_stale: bool) -> bool:
    """Decide (rank 0, broadcast) and do what one run needs; whether it ran. The claim is
    released as soon as the run is known to be finished, or when it ends."""
    dist, progress, current = ctx.dist, ctx.progress, ctx.code["sha256"]
    claim, action = None, "skip"
    try:
        if dist.is_main:
            claim, action = decide(spec, run, current, rerun_stale)
        action = distributed.broadcast(action, dist)
        if isinstance(action, tuple):  # ("failed", error): deciding failed on rank 0
            out.failed.append((spec.run_id, action[1]))
            return False
        if action == "stale":
            out.stale.append(spec.run_id)
            if dist.is_main:
                log(f"{spec.run_id} stale (made by other code: {short(run.fingerprint)})")
            return False
        if action != "run":
            out.busy += action == "busy"
            progress.start_run(i, spec, SKIPPED[action])
            return False
        progress.start_run(i, spec)
        state = runner.run_one(spec, ctx)
        error = (run.refresh().status.get("error") or "") if dist.is_main else ""
        progress.end_run(state, one_line(error))
        if state == "failed":
            out.failed.append((spec.run_id, error))
            if dist.is_main and not progress.enabled:
                log(f"{spec.run_id} failed: {one_line(error)}")
        out.trained.append(spec.run_id)
        return True
    finally:
        if claim is not None:
            claim.release()
