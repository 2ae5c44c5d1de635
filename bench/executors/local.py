"""The local executor: this process (or every rank of a torchrun job) goes through the
suite's runs in order and hands each to the pipeline.

Several workers (and torchrun jobs) may run the same suite at once: each run is claimed
with a lock in its folder for its duration (bench.pipeline.claims), so no run is trained
twice and a dead worker's run is resumed by the next one; summary.csv is rebuilt under a
suite-level lock. Under torchrun every rank takes part in every run and rank 0 alone
decides (and broadcasts) what to do with each run and writes.

A finished run made by other code than the current (its code fingerprint differs) is
*stale*: it is kept, not retrained, and said so in one line; with ``rerun_stale`` its
outputs are moved to ``previous/`` in its folder and it is trained again from scratch. An
unfinished run started by other code resumes (with a note), or starts over with
``rerun_stale``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Sequence

from bench import store
from bench.config import RunSpec, Suite
from bench.fingerprint import short
from bench.pipeline import claims, distributed, runner
from bench.pipeline.distributed import Dist
from bench.pipeline.progress import Progress
from bench.pipeline.setup import DataCache


@dataclass
class Outcome:
    failed: int = 0
    busy: int = 0  # runs another worker was running
    stale: list[str] = field(default_factory=list)  # finished by other code, kept
    trained: list[str] = field(default_factory=list)


SKIPPED = {"skip": " (done, skipped)", "busy": " (taken by another worker, skipped)"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_suite(suite: Suite, runs: Sequence[RunSpec], folder: store.Suite, data: DataCache,
              dist: Dist, progress: Progress, code: dict, rerun_stale: bool = False
              ) -> Outcome:
    """Train and evaluate ``runs`` (a selection of the suite's) that are not finished;
    ``code`` is the current code's fingerprint (bench.fingerprint.fingerprint)."""
    if dist.is_main:
        folder.write_suite(suite.resolved(), [r.run_id for r in suite.runs])
    ctx = runner.RunContext(folder, data, dist, code, progress, suite_file=suite.path)
    out = Outcome()
    for i, spec in enumerate(runs, 1):
        run = folder.run(spec.run_id)
        claim, action = None, "skip"
        if dist.is_main:
            claim, action = _decide(spec, run, code["sha256"], rerun_stale)
        action = distributed.broadcast(action, dist)
        if action == "stale":
            out.stale.append(spec.run_id)
            if dist.is_main:
                log(f"{spec.run_id} stale (made by other code: {short(run.fingerprint)})")
            continue
        if action != "run":
            out.busy += action == "busy"
            progress.start_run(i, spec, SKIPPED[action])
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


def _decide(spec: RunSpec, run: store.Run, current: str, rerun_stale: bool
            ) -> tuple[claims.Claim | None, str]:
    """Rank 0: claim the run and say what to do with it: run, skip (finished), stale
    (finished by other code, kept) or busy (another worker holds it). A finished run gets
    any evaluation it lacks, from its saved predictions."""
    if run.is_done() and not (rerun_stale and run.is_stale(current)):
        return None, _finished(spec, run, current)
    claim = claims.try_claim(run.lock_path)
    if claim is None:
        return None, "busy"
    if run.is_done() and not (rerun_stale and run.is_stale(current)):
        claim.release()  # finished by another worker meanwhile
        return None, _finished(spec, run, current)
    if run.made_by_other_code(current):
        old = short(run.fingerprint)
        if rerun_stale:
            moved = run.move_aside(f"code-{old}")
            log(f"{spec.run_id} made by other code ({old}): its outputs moved to {moved}; "
                "training it again from scratch")
        else:
            log(f"{spec.run_id} resumes a run started by other code ({old}); "
                "--rerun-stale would start it over")
    return claim, "run"


def _finished(spec: RunSpec, run: store.Run, current: str) -> str:
    """A finished run, stale ones included, gets the evaluations it lacks from its saved
    predictions (no retraining: the trained model is what it was)."""
    if runner.metrics_outdated(spec, run):
        with claims.locked(run.lock_path):
            runner.evaluate_saved(spec, run)
        log(f"{spec.run_id} re-evaluated from its saved predictions (new evaluation "
            "options or exit rules)")
    return "stale" if run.is_stale(current) else "skip"


def _summary(folder: store.Suite) -> None:
    with claims.locked(folder.summary_lock_path):
        folder.write_summary()
