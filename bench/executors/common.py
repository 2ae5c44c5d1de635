"""What every executor does with a run, wherever it runs: ask the pipeline what the run
needs (bench.pipeline.plan: finished, stale, taken by another worker, or claimed to
train), train it (bench.pipeline.runner.run_one), release the claim and record the
outcome.

The local executor plans and runs in its own process (under torchrun rank 0 plans for
every rank). A worker of another executor (a Ray task, a SLURM job) gets a :class:`Job`,
rebuilds the suite from it with its own code and calls :func:`work`: the same plan,
claims and files as a local worker. Its driver settles finished runs itself
(``plan(..., claim=False)``) and hands out the rest.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from bench import store
from bench.config import ExecutorConfig, RunSpec, Suite, build_suite
from bench.config.loading import read_raw
from bench.errors import UsageError
from bench.executors.board import Board
from bench.fingerprint import fingerprint, short
from bench.pipeline import runner
from bench.pipeline.distributed import Dist
from bench.pipeline.plan import (BUSY, FAILED, STALE, TRAIN, Plan, one_line, plan,
                                 rebuild_summary, say)
from bench.pipeline.setup import DataCache
from bench.pipeline.tuning import tune_one


@dataclass
class Result:
    run_id: str
    action: str  # what the plan said: train | finished | stale | busy | failed
    state: str | None = None  # done | failed, for runs that trained
    error: str = ""
    worker: str = ""  # host:pid
    files: dict[str, bytes] | None = None  # the run folder's files (results to the driver)


@dataclass
class Outcome:
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, error)
    busy: int = 0  # runs another worker was running
    stale: list[str] = field(default_factory=list)  # finished by other code, kept
    trained: list[str] = field(default_factory=list)

    def add(self, result: Result) -> None:
        """Count a run's :class:`Result`."""
        if FAILED in (result.action, result.state):
            self.failed.append((result.run_id, result.error))
        if result.action == STALE:
            self.stale.append(result.run_id)
        self.busy += result.action == BUSY
        if result.action == TRAIN:
            self.trained.append(result.run_id)


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


def say_stale(run: store.Run) -> None:
    say(f"{run.run_id} stale (made by other code: {short(run.fingerprint)})")


def train(spec: RunSpec, ctx: runner.RunContext) -> Result:
    """Train a run the plan claimed; its error (rank 0) from its status.json."""
    state = runner.run_one(spec, ctx)
    error = ""
    if ctx.dist.is_main:
        error = ctx.suite.run(spec.run_id).refresh().status.get("error") or ""
    return Result(spec.run_id, TRAIN, state, error)


def record(result: Result, folder: store.Suite, board: Board, out: Outcome) -> None:
    """A driver's bookkeeping of a run's outcome: counted, its line shown, a stale run
    named, the summary rebuilt after a run that trained."""
    out.add(result)
    if result.action == STALE:
        say_stale(folder.run(result.run_id))
    board.end(result.run_id, result.action, result.state, one_line(result.error))
    if result.action == TRAIN:
        rebuild_summary(folder)


def driver_plan(spec: RunSpec, folder: store.Suite, code: dict, rerun_stale: bool,
                board: Board, out: Outcome, claim: bool = False) -> Plan | None:
    """A driver's plan of a run: one that needs no worker is recorded now (None); else the
    plan of a run to hand out, holding its claim where ``claim`` (else the worker plans
    and claims it again where it runs)."""
    p = plan(spec, folder.run(spec.run_id), code["sha256"], rerun_stale, claim)
    if p.action == TRAIN:
        return p
    record(Result(spec.run_id, p.action, error=p.error), folder, board, out)
    return None


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
    claimed: bool = False  # True: the driver planned the run and holds its claim
    threads: int = 1  # torch threads: the CPUs the scheduler gave the worker


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
    """Do one run in this process, as a local worker would: rebuild the suite, plan and
    claim (unless the driver did), train, release. ``on_epoch(spec, run, info)`` after
    every epoch, once its checkpoint is written; ``on_start(run)`` before training
    (e.g. to put the checkpoint to resume from in its folder); ``send_files``: the run
    folder's files come back in the result. The run's own failures are recorded in its
    status.json by the pipeline; anything else raises."""
    torch.set_num_threads(max(1, job.threads))
    suite, spec = job_suite(job)
    folder = store.Suite(Path(job.results) / suite.slug)
    run = folder.run(spec.run_id)
    code = fingerprint(suite.config.plugins)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    p = Plan(TRAIN) if job.claimed else plan(spec, run, code["sha256"], job.rerun_stale)
    try:
        if p.action != TRAIN:
            return Result(spec.run_id, p.action, error=p.error, worker=worker)
        if on_start is not None:
            on_start(run)
        progress = (None if on_epoch is None
                    else _RunProgress(lambda info: on_epoch(spec, run, info)))
        ctx = runner.RunContext(folder, DataCache(), Dist(), code, progress,
                                suite_file=job.file)
        result = replace(train(spec, ctx), worker=worker)
        return replace(result, files=run_files(run)) if send_files else result
    finally:
        p.release()


def run_files(run: store.Run) -> dict[str, bytes]:
    """The files a run folder holds (not its lock, nor temporary files of killed writes):
    what a worker sends back to the driver."""
    temporary = {p.name for p in run.temporary_files()}
    return {p.name: p.read_bytes() for p in sorted(run.path.iterdir())
            if p.is_file() and p.name != run.lock_path.name and p.name not in temporary}
