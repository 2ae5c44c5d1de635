"""The Ray executor: every run is a Ray task, every tuning worker a Ray actor
(``--executor ray``; options under ``executor.ray``, bench.config.executor).

- Cluster: ``address`` (``--ray-address``) joins a running cluster; without it a local one
  starts with the command (all of this machine's CPUs and GPUs) and stops with it.
- Resources: each run asks for ``num_cpus`` CPUs and ``num_gpus`` GPUs (by default 1 where
  the cluster has GPUs and training may use them, else 0), divided by ``--runs-per-device``
  K so that K runs share a GPU; a request that no node of the cluster can meet is an
  error at once (Ray itself would wait for such a node forever).
- Results, ``results: shared``: every worker writes the results root itself (a folder all
  nodes see) and plans, claims and resumes exactly as a local worker
  (bench.executors.common.work), so Ray workers, local workers and torchrun jobs may share
  one suite. ``results: driver``: the driver plans and claims every run in its own
  results root; a worker trains in a scratch folder of its node, sends the checkpoint back
  after every epoch and every file at the end, and the driver's node writes them.
- A worker process that dies (killed, out of memory, node lost) has its task started
  again (``max_retries``); the run resumes from its last checkpoint (shared: in the run
  folder; driver: the copy the driver holds).
- The driver shows one progress line per run (bench.executors.board).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from bench import store
from bench.config import RayConfig, RunSpec, Suite, TrainingConfig
from bench.errors import UsageError
from bench.executors.board import Board
from bench.executors.common import (Job, Outcome, Result, driver_plan, make_jobs,
                                    record, tune_work, work)
from bench.fileio import atomic_write
from bench.pipeline.plan import prepare_folder, rebuild_summary, say

POLL_S = 0.5  # how often the driver looks for progress and finished tasks
RESUME_FILES = (store.files.CHECKPOINT, store.files.STATUS)  # what a driver-mode worker
                                                             # starts from


# ---------------------------------------------------------------------------------------
# The cluster and what each run asks of it


def connect(options: RayConfig) -> bool:
    """Join ``options.address`` or start a local cluster; whether this call started Ray
    (and so must stop it). Ray already initialised in this process is used as it is."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    try:  # "local": a new cluster, even where another one runs on this machine
        ray.init(address=options.address or "local", include_dashboard=False,
                 logging_level=logging.WARNING)
    except ConnectionError as err:
        raise UsageError(f"--ray-address {options.address}: cannot join the Ray cluster "
                         f"({err})") from None
    return True


def resources(options: RayConfig, training: TrainingConfig, runs_per_device: int = 1) -> dict:
    """Ray resources of one run (or tuning worker): CPUs and GPUs, checked against the
    cluster's nodes; a request no node can meet is a UsageError naming the option.
    ``runs_per_device`` K (``--runs-per-device``): each run asks for 1/K of its GPUs, so
    that K runs share a GPU."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    cluster_gpus = any(n.get("GPU", 0) > 0 for n in nodes)
    gpus = options.num_gpus
    if gpus is None:
        gpus = 0 if training.device == "cpu" else int(cluster_gpus)
    gpus = gpus / runs_per_device if gpus else gpus
    if training.device.startswith("cuda") and gpus == 0:
        raise UsageError(f"training.device is {training.device}, but each run asks for no GPU "
                         "(executor.ray.num_gpus is 0, or no node of the Ray cluster has one)")
    need = {"CPU": options.num_cpus, "GPU": gpus}
    if not any(all(n.get(k, 0) >= v for k, v in need.items()) for n in nodes):
        have = "; ".join(f"{n.get('CPU', 0):g} CPUs, {n.get('GPU', 0):g} GPUs" for n in nodes)
        raise UsageError(f"executor.ray: each run asks for {options.num_cpus:g} CPUs "
                         f"(executor.ray.num_cpus) and {gpus:g} GPUs (executor.ray.num_gpus), "
                         f"but no node of the Ray cluster has that much (nodes: "
                         f"{have or 'none'})")
    return {"num_cpus": options.num_cpus, "num_gpus": gpus}


def _relay(results: Path):
    """The actor that carries progress (and, driver mode, files) between the workers and
    the driver; it lives on the driver's node and takes no CPU."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(Relay).options(num_cpus=0, scheduling_strategy=here).remote(str(results))


class Relay:
    """Progress messages from the workers, and (driver mode) the run files the driver's
    results root holds: a worker reads the files it resumes from and writes its checkpoint
    after every epoch."""

    def __init__(self, results: str):
        self.results = Path(results)
        self.messages: list[tuple[str, int, str]] = []

    def epoch(self, run_id: str, epoch: int, text: str) -> None:
        self.messages.append((run_id, epoch, text))

    def drain(self) -> list[tuple[str, int, str]]:
        out, self.messages = self.messages, []
        return out

    def load(self, slug: str, run_id: str, names: Sequence[str]) -> dict[str, bytes]:
        run = store.Run(self.results / slug / run_id)
        return {n: run.file(n).read_bytes() for n in names if run.file(n).is_file()}

    def save(self, slug: str, run_id: str, files: dict[str, bytes]) -> None:
        write_files(store.Run(self.results / slug / run_id), files)


def write_files(run: store.Run, files: dict[str, bytes]) -> None:
    """A worker's run files written into the driver's run folder, each atomically;
    status.json last, so that a run is not done before all of its files are there."""
    run.path.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: n == store.files.STATUS):
        atomic_write(run.file(name), lambda f, data=files[name]: f.write(data))


# ---------------------------------------------------------------------------------------
# The worker side


def _epoch_text(info: dict) -> str:
    top1 = " ".join(f"{r['heldout_top1']:.1f}" if r["heldout_top1"] == r["heldout_top1"]
                    else "-" for r in info["rows"])
    return f"stage {info['stage']} | held-out top1 {top1}"


def run_task(job: Job, relay, to_driver: bool) -> Result:
    """One run in a Ray worker (bench.executors.common.work). ``to_driver``: train in a
    scratch folder of this node, seeded with the checkpoint the driver holds, and send
    every epoch's checkpoint and, at the end, every file back."""
    import ray

    if not to_driver:
        return work(job, lambda spec, run, info: relay.epoch.remote(
            spec.run_id, info["epoch"], _epoch_text(info)))

    def on_epoch(spec: RunSpec, run: store.Run, info: dict) -> None:
        files = {n: run.file(n).read_bytes() for n in RESUME_FILES if run.file(n).is_file()}
        ray.get(relay.save.remote(run.path.parent.name, spec.run_id, files))
        relay.epoch.remote(spec.run_id, info["epoch"], _epoch_text(info))

    def on_start(run: store.Run) -> None:  # resume from the driver's copy, if any
        write_files(run, ray.get(relay.load.remote(run.path.parent.name, run.path.name,
                                                   RESUME_FILES)))

    scratch = Path(tempfile.gettempdir()) / f"bench-ray-{os.getuid()}" / job.run_id
    shutil.rmtree(scratch, ignore_errors=True)  # a dead attempt's leftovers
    try:
        return work(replace(job, results=str(scratch)), on_epoch, on_start, send_files=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# The driver


def run_suite(suite: Suite, runs: Sequence[RunSpec], folder: store.Suite, options: RayConfig,
              code: dict, board: Board, rerun_stale: bool = False, runs_per_device: int = 1
              ) -> Outcome:
    """Train and evaluate ``runs`` as Ray tasks, at most as many at once as the cluster
    has room for (``runs_per_device`` on each GPU); returns what happened, as the local
    executor does."""
    import ray

    started = connect(options)
    try:
        need = resources(options, suite.config.training, runs_per_device)
        prepare_folder(suite, folder)
        to_driver = options.results == "driver"
        relay = _relay(folder.path.parent)
        task = ray.remote(run_task).options(max_retries=options.max_retries,
                                            retry_exceptions=False, **need)
        jobs = make_jobs(suite, str(folder.path.parent.resolve()), [r.run_id for r in runs],
                         rerun_stale, claimed=to_driver, threads=max(1, int(need["num_cpus"])))
        out, pending, plans = Outcome(), {}, {}
        try:
            for spec, job in zip(runs, jobs):  # finished runs stay here; driver mode: the
                # driver claims the others, as a local worker would (else each worker does)
                p = driver_plan(spec, folder, code, rerun_stale, board, out, claim=to_driver)
                if p is not None:
                    plans[spec.run_id] = p
                    pending[task.remote(job, relay, to_driver)] = spec.run_id
            _collect(pending, relay, folder, board, out, plans)
        finally:
            for p in plans.values():
                p.release()
        rebuild_summary(folder)
        return out
    finally:
        board.close()
        if started:
            ray.shutdown()


def _collect(pending: dict, relay, folder: store.Suite, board: Board, out: Outcome,
             plans: dict) -> None:
    """Wait for the tasks, showing their progress; write what comes back."""
    import ray

    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for run_id, epoch, text in ray.get(relay.drain.remote()):
            board.epoch(run_id, epoch, text)
        for ref in done:
            run_id = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as err:  # the task raised, or its retries ran out
                result = Result(run_id, "failed", error=_ray_error(err))
            if result.files is not None:
                write_files(folder.run(run_id), result.files)
            plans.pop(run_id).release()
            record(result, folder, board, out)


def _ray_error(err: Exception) -> str:
    cause = getattr(err, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"


# ---------------------------------------------------------------------------------------
# Tuning: actors that each join every study


class TuneWorker:
    """A tuning worker: like one ``bench tune`` process, on a node of the cluster."""

    def tune(self, job: Job, run_ids: list[str], storage_url: str) -> list[str]:
        return tune_work(job, run_ids, storage_url)


def tune(suite: Suite, targets: Sequence[RunSpec], folder: store.Suite, storage_url: str,
         options: RayConfig) -> bool:
    """``options.tune_workers`` actors share every study of ``targets``; True once they
    are done."""
    import ray

    started = connect(options)
    try:
        need = resources(options, suite.config.training)
        shared = options.results == "shared"
        scratch = None if shared else tempfile.mkdtemp(prefix="bench-ray-tune-")
        actor = ray.remote(TuneWorker).options(max_restarts=options.max_retries,
                                               max_task_retries=options.max_retries, **need)
        results = str(folder.path.parent.resolve()) if shared else scratch
        (job,) = make_jobs(suite, results, [targets[0].run_id],
                           threads=max(1, int(need["num_cpus"])))
        workers = [actor.remote() for _ in range(options.tune_workers)]
        started_at = time.monotonic()
        calls = [w.tune.remote(job, [t.run_id for t in targets], storage_url)
                 for w in workers]
        for i, lines in enumerate(ray.get(calls), 1):
            for line in lines:
                say(f"[tuning worker {i}] {line}")
        say(f"{len(workers)} tuning workers done in {time.monotonic() - started_at:.0f} s")
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        if started:
            ray.shutdown()
    return True
