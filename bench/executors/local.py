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

import logging
import sys
from dataclasses import dataclass, field
from typing import Sequence

from bench import store
from bench.config import RunSpec, Suite
from bench.fileio import UnreadableFile
from bench.fingerprint import short
from bench.pipeline import claims, distributed, runner
from bench.pipeline.distributed import Dist
from bench.pipeline.progress import Progress
from bench.pipeline.setup import DataCache


@dataclass
class Outcome:
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, error)
    busy: int = 0  # runs another worker was running
    stale: list[str] = field(default_factory=list)  # finished by other code, kept
    trained: list[str] = field(default_factory=list)


SKIPPED = {"skip": " (done, skipped)", "busy": " (taken by another worker, skipped)"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


warn = logging.getLogger("bench.executors").warning  # broken files: "warning: ..." lines


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
        with claims.locked(folder.summary_lock_path):
            _tidy_suite(folder)
            folder.write_suite(suite.resolved(), [r.run_id for r in suite.runs])
    ctx = runner.RunContext(folder, data, dist, code, progress, suite_file=suite.path)
    out = Outcome()
    for i, spec in enumerate(runs, 1):
        ran = _one(i, spec, folder.run(spec.run_id), ctx, out, rerun_stale)
        if ran and dist.is_main:
            _summary(folder)
    if dist.is_main:
        _summary(folder)
    return out


def _one(i: int, spec: RunSpec, run: store.Run, ctx: runner.RunContext, out: Outcome,
         rerun_stale: bool) -> bool:
    """Decide (rank 0, broadcast) and do what one run needs; whether it ran. The claim is
    released as soon as the run is known to be finished, or when it ends."""
    dist, progress, current = ctx.dist, ctx.progress, ctx.code["sha256"]
    claim, action = None, "skip"
    try:
        if dist.is_main:
            claim, action = _decide_safely(spec, run, current, rerun_stale)
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
        progress.end_run(state, _one_line(error))
        if state == "failed":
            out.failed.append((spec.run_id, error))
            if dist.is_main and not progress.enabled:
                log(f"{spec.run_id} failed: {_one_line(error)}")
        out.trained.append(spec.run_id)
        return True
    finally:
        if claim is not None:
            claim.release()


def _one_line(error: str) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def _decide_safely(spec: RunSpec, run: store.Run, current: str, rerun_stale: bool
                   ) -> tuple[claims.Claim | None, str | tuple]:
    """:func:`_decide`, with an error (a file that cannot be moved, a lock that cannot be
    taken, ...) turned into ("failed", message) for this run alone."""
    try:
        return _decide(spec, run, current, rerun_stale)  # releases its claim if it raises
    except Exception as err:
        message = f"{type(err).__name__}: {err}"
        log(f"{spec.run_id} failed: {_one_line(message)}")
        return None, ("failed", message)


def _decide(spec: RunSpec, run: store.Run, current: str, rerun_stale: bool
            ) -> tuple[claims.Claim | None, str]:
    """Rank 0: claim the run and say what to do with it: run, skip (finished), stale
    (finished by other code, kept) or busy (another worker holds it). A finished run gets
    any evaluation it lacks, from its saved predictions. A claimed run is tidied first:
    temporary files of killed writes deleted, unreadable files set aside."""
    def finished() -> bool:
        return run.is_done() and not (rerun_stale and run.is_stale(current))

    if finished():
        return None, _finished(spec, run, current)
    claim = claims.try_claim(run.lock_path)
    if claim is None:
        return None, "busy"
    try:
        # Finished by another worker meanwhile, or only a broken metrics.json was missing.
        if finished() or (_tidy_run(spec, run) and finished()):
            claim.release()
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
    except BaseException:
        claim.release()
        raise
    return claim, "run"


def _tidy_run(spec: RunSpec, run: store.Run) -> bool:
    """Holding the run's claim: clean up after killed writers and set broken files aside;
    a finished run whose metrics.json was broken gets it back from its saved predictions
    (returns whether it did)."""
    _, moved = run.tidy()
    for name, why, where in moved:
        then = "; the run starts over" if name == store.files.CHECKPOINT else ""
        warn("%s is unreadable (%s); moved to %s%s", run.file(name), why, where.name, then)
    if not any(name == store.files.METRICS for name, _, _ in moved) or run.state != "done":
        return False
    try:
        runner.evaluate_saved(spec, run)
    except FileNotFoundError:
        return False  # no predictions: the run resumes from its checkpoint
    except UnreadableFile as err:
        where = store.files.set_aside(err.path)
        warn("%s is unreadable (%s); moved to %s", err.path, err.reason, where.name)
        return False
    log(f"{spec.run_id}: metrics.json computed again from its saved predictions")
    return True


def _tidy_suite(folder: store.Suite) -> None:
    _, moved = folder.tidy()
    for name, why, where in moved:
        warn("%s is unreadable (%s); moved to %s", folder.path / name, why, where.name)


def _finished(spec: RunSpec, run: store.Run, current: str) -> str:
    """A finished run, stale ones included, gets the evaluations it lacks from its saved
    predictions (no retraining: the trained model is what it was)."""
    if run.temporary_files():  # a killed evaluation from saved predictions left them
        claim = claims.try_claim(run.lock_path)
        if claim is not None:
            with claim:
                run.remove_temporary()
    if runner.metrics_outdated(spec, run):
        with claims.locked(run.lock_path):
            try:
                runner.evaluate_saved(spec, run)
            except UnreadableFile as err:
                raise UnreadableFile(err.path, f"{err.reason}; the run keeps its metrics.json "
                                               "without the evaluation it lacks") from err
        log(f"{spec.run_id} re-evaluated from its saved predictions (new evaluation "
            "options or exit rules)")
    return "stale" if run.is_stale(current) else "skip"


def _summary(folder: store.Suite) -> None:
    with claims.locked(folder.summary_lock_path):
        _tidy_suite(folder)
        folder.write_summary()
