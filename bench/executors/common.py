"""What every executor does with one run, wherever it runs: decide (skip a finished run,
keep a stale one, find it taken by another worker), claim, hand it to the pipeline
(bench.pipeline.runner.run_one), release.

The local executor calls :func:`decide` and ``run_one`` itself (under torchrun rank 0
decides for every rank). A worker of another executor (a Ray task, a SLURM job) gets a
:class:`Job`, rebuilds the suite from it with its own code and calls :func:`work`: the
same decisions, claims and files as a local worker.

A finished run made by other code than the current (its code fingerprint differs) is
*stale*: it is kept, not retrained, and said so in one line; with ``rerun_stale`` its
outputs are moved to ``previous/`` in its folder and it is trained again from scratch. An
unfinished run started by other code resumes (with a note), or starts over with
``rerun_stale``.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from bench import store
from bench.config import ExecutorConfig, RunSpec, Suite, build_suite
from bench.config.loading import read_raw
from bench.errors import UsageError
from bench.executors.board import Board
from bench.fileio import UnreadableFile
from bench.fingerprint import fingerprint, short
from bench.pipeline import claims, runner
from bench.pipeline.distributed import Dist
from bench.pipeline.setup import DataCache
from bench.pipeline.tuning import tune_one

SKIPPED = {"skip": " (done, skipped)", "busy": " (taken by another worker, skipped)"}


@dataclass
class Outcome:
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, error)
    busy: int = 0  # runs another worker was running
    stale: list[str] = field(default_factory=list)  # finished by other code, kept
    trained: list[str] = field(default_factory=list)

    def add(self, result: "Result") -> None:
        """Count a worker's :class:`Result`."""
        if result.action == "failed" or result.state == "failed":
            self.failed.append((result.run_id, result.error))
        if result.action == "stale":
            self.stale.append(result.run_id)
        self.busy += result.action == "busy"
        if result.action == "run":
            self.trained.append(result.run_id)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


warn = logging.getLogger("bench.executors").warning  # broken files: "warning: ..." lines


def one_line(error: str) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def chosen(suite: Suite, name: str | None = None, ray_address: str | None = None
           ) -> ExecutorConfig:
    """The suite's ``executor:`` section with the command line's ``--executor`` and
    ``--ray-address`` applied (an address alone means the Ray executor)."""
    config = suite.config.executor
    if ray_address is not None:
        if (name or "ray") != "ray":
            raise UsageError(f"--ray-address is for the Ray executor, not --executor {name}")
        name = "ray"
        config = config.replace(ray=config.ray.replace(address=ray_address))
    return config.replace(name=name or config.name)


# ---------------------------------------------------------------------------------------
# Deciding what to do with a run (the worker that holds its claim, or rank 0)


def prepare_folder(suite: Suite, folder: store.Suite) -> None:
    """suite.json written (and broken suite-level files set aside) before any run."""
    with claims.locked(folder.summary_lock_path):
        tidy_suite(folder)
        folder.write_suite(suite.resolved(), [r.run_id for r in suite.runs])


def decide(spec: RunSpec, run: store.Run, current: str, rerun_stale: bool
           ) -> tuple[claims.Claim | None, str | tuple]:
    """Claim the run and say what to do with it: "run" (the claim is returned, held), "skip"
    (finished), "stale" (finished by other code, kept) or "busy" (another worker holds it);
    an error (a file that cannot be moved, a lock that cannot be taken, ...) is
    ("failed", message), for this run alone."""
    try:
        return _decide(spec, run, current, rerun_stale)  # releases its claim if it raises
    except Exception as err:
        return None, _failure(spec, err)


def if_finished(spec: RunSpec, run: store.Run, current: str, rerun_stale: bool
                ) -> str | tuple | None:
    """What :func:`decide` says of a finished run ("skip", "stale", or ("failed", message)),
    without claiming anything; None for a run that a worker should take. A driver uses it
    to hand out only what is left to do."""
    try:
        if _is_finished(run, current, rerun_stale):
            return _finished(spec, run, current)
    except Exception as err:
        return _failure(spec, err)
    return None


def _is_finished(run: store.Run, current: str, rerun_stale: bool) -> bool:
    return run.is_done() and not (rerun_stale and run.is_stale(current))


def _failure(spec: RunSpec, err: Exception) -> tuple[str, str]:
    """("failed", message) for an error that ends this run alone, said in one line."""
    message = f"{type(err).__name__}: {err}"
    log(f"{spec.run_id} failed: {one_line(message)}")
    return "failed", message


def _decide(spec: RunSpec, run: store.Run, current: str, rerun_stale: bool
            ) -> tuple[claims.Claim | None, str]:
    """A finished run gets any evaluation it lacks, from its saved predictions. A claimed
    run is tidied first: temporary files of killed writes deleted, unreadable files set
    aside."""
    if _is_finished(run, current, rerun_stale):
        return None, _finished(spec, run, current)
    claim = claims.try_claim(run.lock_path)
    if claim is None:
        return None, "busy"
    try:
        # Finished by another worker meanwhile, or only a broken metrics.json was missing.
        if (_is_finished(run, current, rerun_stale)
                or (tidy_run(spec, run) and _is_finished(run, current, rerun_stale))):
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


def tidy_run(spec: RunSpec, run: store.Run) -> bool:
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


def tidy_suite(folder: store.Suite) -> None:
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


def rebuild_summary(folder: store.Suite) -> None:
    with claims.locked(folder.summary_lock_path):
        tidy_suite(folder)
        folder.write_summary()


# ---------------------------------------------------------------------------------------
# A run handed to a worker of another executor (a Ray task, a SLURM job)


@dataclass(frozen=True)
class Job:
    """What a worker needs to do one run: the suite as read (plain YAML data) with its
    overrides, rebuilt by the worker's own code, and where the results go."""

    raw: dict  # the suite file's content (bench.config.loading.read_raw)
    file: str  # the suite file, for error messages and plugin paths
    overrides: tuple[str, ...]
    run_id: str
    results: str  # the results root this worker writes (shared, or its scratch folder)
    rerun_stale: bool = False
    decide: bool = True  # False: the driver decided and holds the claim
    threads: int = 1  # torch threads: the CPUs the scheduler gave the worker


@dataclass
class Result:
    run_id: str
    action: str  # run | skip | stale | busy | failed (before the run could start)
    state: str | None = None  # done | failed, for runs that ran
    error: str = ""
    worker: str = ""  # host:pid
    files: dict[str, bytes] | None = None  # the run folder's files (results to the driver)


def skipped(run_id: str, action: str | tuple) -> Result:
    """The result of a run no worker was given: "skip", "stale", "busy", or ("failed",
    message) when deciding failed."""
    if isinstance(action, tuple):
        return Result(run_id, "failed", error=action[1])
    return Result(run_id, action)


def record(result: Result, folder: store.Suite, board: Board, out: Outcome) -> None:
    """A driver's bookkeeping of a run's outcome: counted, its line shown, a stale run
    named, the summary rebuilt after a run that ran."""
    out.add(result)
    if result.action == "stale":
        log(f"{result.run_id} stale (made by other code: "
            f"{short(folder.run(result.run_id).fingerprint)})")
    board.end(result.run_id, result.action, result.state, one_line(result.error))
    if result.action == "run":
        rebuild_summary(folder)


class _RunProgress:
    """The progress interface of one run's trainer: no per-step callback, one per epoch."""

    def __init__(self, on_epoch: Callable[[dict], None]):
        self.on_epoch = on_epoch

    def callbacks(self):
        return None, self.on_epoch


def make_jobs(suite: Suite, results: str, run_ids: list[str], rerun_stale: bool = False,
         **options) -> list[Job]:
    """A job for each of ``run_ids`` of ``suite``, writing under the results root
    ``results``; ``options``: the other fields of :class:`Job`."""
    raw, file = read_raw(suite.path), str(Path(suite.path).resolve())
    return [Job(raw, file, suite.overrides, run_id, results, rerun_stale, **options)
            for run_id in run_ids]


def tune_work(job: Job, run_ids: list[str], storage_url: str) -> list[str]:
    """A tuning worker (like one ``bench tune`` process): joins the study of each of
    ``run_ids``; returns what it said, line by line."""
    torch.set_num_threads(max(1, job.threads))
    lines: list[str] = []
    data = DataCache()
    for run_id in run_ids:
        suite, spec = job_suite(replace(job, run_id=run_id))
        tune_one(spec, suite.config.tune, store.Suite(Path(job.results) / suite.slug),
                 storage_url, data, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    return lines


def job_suite(job: Job) -> tuple[Suite, RunSpec]:
    """The suite rebuilt by this worker's code, and the job's run in it."""
    suite = build_suite(job.raw, job.file, job.overrides)
    for spec in suite.runs:
        if spec.run_id == job.run_id:
            return suite, spec
    raise UsageError(f"{job.file}: this worker's code expands the suite without run "
                     f"{job.run_id} (is it on another commit than the driver?)")


def work(job: Job, on_epoch: Callable[[RunSpec, store.Run, dict], None] | None = None,
         on_start: Callable[[store.Run], None] | None = None, send_files: bool = False
         ) -> Result:
    """Do one run in this process, as a local worker would: rebuild the suite, decide and
    claim (unless the driver did), run, release. ``on_epoch(spec, run, info)`` after every
    epoch, once its checkpoint is written; ``on_start(run)`` before the run starts
    (e.g. to put the checkpoint to resume from in its folder); ``send_files``: the run
    folder's files come back in the result. The run's own failures are recorded in its
    status.json by the pipeline; anything else raises."""
    torch.set_num_threads(max(1, job.threads))
    suite, spec = job_suite(job)
    folder = store.Suite(Path(job.results) / suite.slug)
    run = folder.run(spec.run_id)
    code = fingerprint(suite.config.plugins)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    claim, action = None, "run"
    if job.decide:
        claim, action = decide(spec, run, code["sha256"], job.rerun_stale)
    try:
        if isinstance(action, tuple):
            return Result(spec.run_id, "failed", error=action[1], worker=worker)
        if action != "run":
            return Result(spec.run_id, action, worker=worker)
        if on_start is not None:
            on_start(run)
        progress = (None if on_epoch is None
                    else _RunProgress(lambda info: on_epoch(spec, run, info)))
        ctx = runner.RunContext(folder, DataCache(), Dist(), code, progress,
                                suite_file=job.file)
        state = runner.run_one(spec, ctx)
        error = run.refresh().status.get("error") or ""
        return Result(spec.run_id, "run", state, error, worker,
                      run_files(run) if send_files else None)
    finally:
        if claim is not None:
            claim.release()


def run_files(run: store.Run) -> dict[str, bytes]:
    """The files a run folder holds (not its lock, nor temporary files of killed writes):
    what a worker sends back to the driver."""
    temporary = {p.name for p in run.temporary_files()}
    return {p.name: p.read_bytes() for p in sorted(run.path.iterdir())
            if p.is_file() and p.name != run.lock_path.name and p.name not in temporary}
