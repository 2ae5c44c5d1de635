"""The SLURM executor: one submitit job array over the runs (``--executor slurm``; options
under ``executor.slurm``, bench.config.executor).

- Each array task does one run as a local worker would (bench.executors.common.work): it
  rebuilds the suite with its own code, plans and claims the run in the results root (a
  file system the cluster's nodes share), trains, releases. Local workers, Ray workers
  and SLURM jobs may share one suite. ``--runs-per-device`` K: each job of the array
  runs K tasks (``--ntasks-per-node``) on its GPU, one run each.
- Preemption and time-outs: SLURM signals the job before it stops it; submitit's handler
  asks the job's callable for a checkpoint (:meth:`RunJob.checkpoint`: the same job
  again, since the run's own checkpoint.pt holds the training state of its last epoch)
  and requeues it; the requeued job resumes from that checkpoint. Time-outs are requeued
  ``max_requeue`` times, preemptions always.
- Logs: ``results/<suite>/_slurm/<job id>_<task>/`` next to the run folders (the driver
  prints which job does which run). ``wait: false`` submits and returns; otherwise the
  driver waits, showing one progress line per run (read from the runs' status.json).
- ``cluster: local`` runs the same jobs with submitit's local executor (processes on this
  machine, the same signals and requeues): a way to try a suite's SLURM settings without
  a cluster, and what the tests use.
"""
from __future__ import annotations

import shutil
import time
from typing import Sequence

import torch

from bench import store
from bench.config import RunSpec, SlurmConfig, Suite, TrainingConfig
from bench.errors import UsageError
from bench.executors.board import Board
from bench.executors.common import (Job, Outcome, Result, driver_plan, make_jobs,
                                    record, tune_work, work)
from bench.pipeline.plan import prepare_folder, rebuild_summary, say

POLL_S = 2.0  # how often the driver looks at the jobs and the runs' status.json
LOGS = "_slurm"  # under results/<suite>/ (a folder the store does not take for a run)


class RunJob:
    """The callable of one array task: a run. submitit finds ``checkpoint`` and requeues
    the task when SLURM preempts it or its time runs out."""

    def __call__(self, job: Job) -> Result:
        return work(job)

    def checkpoint(self, job: Job):
        import submitit

        return submitit.helpers.DelayedSubmission(self, job)  # resumes from checkpoint.pt


class RunGroupJob:
    """The callable of a job whose K tasks share the job's GPU (``--runs-per-device`` K):
    task i does run i of the group (a last group may be smaller: its spare tasks do
    nothing)."""

    def __call__(self, jobs: list[Job]) -> Result | None:
        import submitit

        rank = submitit.JobEnvironment().local_rank
        return work(jobs[rank]) if rank < len(jobs) else None

    def checkpoint(self, jobs: list[Job]):
        import submitit

        return submitit.helpers.DelayedSubmission(self, jobs)


class TuneJob:
    """A tuning worker (like one ``bench tune`` process); requeued like :class:`RunJob`
    (the study resumes; a trial that was cut off is marked failed by its heartbeat)."""

    def __call__(self, job: Job, run_ids: list[str], storage_url: str) -> list[str]:
        return tune_work(job, run_ids, storage_url)

    def checkpoint(self, job: Job, run_ids: list[str], storage_url: str):
        import submitit

        return submitit.helpers.DelayedSubmission(self, job, run_ids, storage_url)


def gpus(options: SlurmConfig, training: TrainingConfig) -> int:
    """GPUs per job: ``options.gpus``, else 1 when training asks for CUDA (``auto``: when
    this machine sees a GPU), else 0."""
    if options.gpus is not None:
        return options.gpus
    if training.device.startswith("cuda"):
        return 1
    return int(training.device == "auto" and torch.cuda.is_available())


def executor(options: SlurmConfig, training: TrainingConfig, folder: store.Suite, name: str,
             runs_per_device: int = 1):
    """A submitit executor with the suite's SLURM settings; its logs under ``folder``.
    ``runs_per_device`` K: K tasks per job, sharing the job's GPUs (one run each)."""
    import submitit

    if options.cluster == "slurm" and shutil.which("sbatch") is None:
        raise UsageError("executor.slurm.cluster is slurm, but sbatch is not on PATH here "
                         "(run on the cluster's login node; cluster: local tries the jobs "
                         "on this machine)")
    ex = submitit.AutoExecutor(folder=folder.path / LOGS / "%j", cluster=options.cluster,
                               slurm_max_num_timeout=options.max_requeue,
                               local_max_num_timeout=options.max_requeue)
    params = {"name": name, "timeout_min": options.time_min, "nodes": 1,
              "tasks_per_node": runs_per_device,
              "cpus_per_task": options.cpus, "gpus_per_node": gpus(options, training)}
    if options.mem_gb is not None:
        params["mem_gb"] = options.mem_gb
    if options.partition is not None:
        params["slurm_partition"] = options.partition
    if options.array_parallelism is not None:
        params["slurm_array_parallelism"] = options.array_parallelism
    ex.update_parameters(**params)
    return ex


def drop_placeholder(folder: store.Suite) -> None:
    """submitit makes the folder it is given, "%j" and all, before a job has an id (its
    local cluster's controller at every start of a job); each job logs in a folder named
    after its id, and the empty placeholder goes once the jobs are submitted and again
    once they are done."""
    placeholder = folder.path / LOGS / "%j"
    try:
        placeholder.rmdir()  # only if empty
    except OSError:
        pass


def _jobs(suite: Suite, folder: store.Suite, run_ids: Sequence[str], rerun_stale: bool,
          threads: int) -> list[Job]:
    return make_jobs(suite, str(folder.path.parent.resolve()), list(run_ids), rerun_stale,
                     threads=threads)


def run_suite(suite: Suite, runs: Sequence[RunSpec], folder: store.Suite,
              options: SlurmConfig, code: dict, board: Board, rerun_stale: bool = False,
              runs_per_device: int = 1) -> Outcome | None:
    """Submit one array job over ``runs`` and (``options.wait``) wait for it; None when it
    was only submitted. ``runs_per_device`` K > 1: each job of the array does K runs side
    by side, one task each, on the job's GPU."""
    prepare_folder(suite, folder)
    ex = executor(options, suite.config.training, folder, f"bench-{suite.slug}",
                  runs_per_device)
    out = Outcome()  # finished runs are not submitted; each job plans and claims its run
    left = [spec for spec in runs
            if driver_plan(spec, folder, code, rerun_stale, board, out) is not None]
    work_of = _jobs(suite, folder, [r.run_id for r in left], rerun_stale, options.cpus)
    k = runs_per_device
    if k == 1:
        jobs = ex.map_array(RunJob(), work_of) if left else []
        tasks = [(job, None) for job in jobs]
    else:
        groups = [work_of[i:i + k] for i in range(0, len(work_of), k)]
        jobs = ex.map_array(RunGroupJob(), groups) if left else []
        tasks = [(jobs[i // k], i % k) for i in range(len(left))]
    drop_placeholder(folder)
    for spec, (job, task) in zip(left, tasks):
        where = "" if task is None else f", task {task}"
        say(f"{spec.run_id}: job {job.job_id}{where}, logs in {job.paths.folder}")
    if not options.wait:
        say(f"{len(jobs)} job(s) submitted; `bench report` renders the results once they "
            "are done")
        board.close()
        return None
    try:
        return _wait(dict(zip((r.run_id for r in left), tasks)), folder, board, out)
    finally:
        board.close()
        drop_placeholder(folder)  # (submitit's local controller makes it at every start)


def _wait(tasks: dict, folder: store.Suite, board: Board, out: Outcome) -> Outcome:
    """Until every job is done: each run's progress from its status.json, each job's
    result as it ends. ``tasks``: run id -> (job, its task in the job, or None for a job
    of one task)."""
    import submitit

    pending = dict(tasks)
    while pending:
        time.sleep(POLL_S)
        for run_id, (job, task) in list(pending.items()):
            status = folder.run(run_id).refresh().status
            if status.get("state") == "running":
                board.epoch(run_id, status.get("epoch", 0))
            if not job.done():
                continue
            del pending[run_id]
            try:
                result = job.result() if task is None else job.results()[task]
            except (submitit.core.utils.FailedJobError,
                    submitit.core.utils.UncompletedJobError) as err:
                lines = [line for line in str(err).splitlines() if line.strip()]
                result = Result(run_id, "failed", error=lines[-1] if lines else repr(err))
            record(result, folder, board, out)
    rebuild_summary(folder)
    return out


def tune(suite: Suite, targets: Sequence[RunSpec], folder: store.Suite, storage_url: str,
         options: SlurmConfig) -> bool:
    """``options.tune_workers`` jobs (one array) share every study of ``targets``; True
    once they are done, False when they were only submitted (``options.wait`` false)."""
    ex = executor(options, suite.config.training, folder, f"bench-tune-{suite.slug}")
    (job,) = _jobs(suite, folder, [targets[0].run_id], False, options.cpus)
    run_ids = [t.run_id for t in targets]
    jobs = ex.map_array(TuneJob(), [job] * options.tune_workers,
                        [run_ids] * options.tune_workers,
                        [storage_url] * options.tune_workers)
    drop_placeholder(folder)
    say(f"{len(jobs)} tuning job(s): {', '.join(j.job_id for j in jobs)}; logs in "
        f"{folder.path / LOGS}")
    if not options.wait:
        return False
    for i, j in enumerate(jobs, 1):
        for line in j.result():
            say(f"[tuning job {i}] {line}")
    drop_placeholder(folder)
    return True
