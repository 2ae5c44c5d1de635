"""``bench run SUITE --runs-per-device K`` with the local executor: K runs of the suite side
by side on each device, each in a worker process of its own.

A launch-bound run (a small CIFAR network at batch 64) leaves most of a GPU idle; K runs
on it at once use it better. Each worker is a plain ``bench run`` of the same suite (the
same selection, overrides and results root): the workers share the results folder, each
run is claimed by the one worker that trains it (bench.pipeline.claims) and has its own
run folder, and a run cut off resumes from its checkpoint on the next ``bench run``, as
with workers started by hand.

- Devices: ``training.device`` cpu is the one CPU; cuda:N is that GPU alone; cuda, or
  auto on a machine with GPUs, is every visible GPU, each worker seeing only its own
  (``CUDA_VISIBLE_DEVICES``), so that the suite, and so the run ids, stay as they are.
- Threads: every worker gets ``cores // workers`` torch threads (at least 1).
- This process shows one line per run from the runs' status.json (bench.executors.board),
  waits for the workers and renders the report once, at the end.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Sequence

from bench import store
from bench.config import RunSpec
from bench.errors import UsageError
from bench.executors.board import Board
from bench.executors.common import Outcome

POLL_S = 1.0  # how often the runs' status.json are read
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Worker:
    device: str  # where it trains, as said to the user (cpu, cuda:0, ...)
    env: dict[str, str]  # what its environment sets


def runs_per_device(value) -> int:
    """``--runs-per-device``: a whole number >= 1 (a UsageError in one line otherwise)."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--runs-per-device: expected a whole number >= 1 (runs side by "
                         f"side on each device), found {value!r}")
    return int(text)


def devices(setting: str, cuda_count: int, visible: str | None) -> list[tuple[str, dict]]:
    """(name, environment) of each device the suite's ``training.device`` trains on here;
    ``visible``: this process's CUDA_VISIBLE_DEVICES (None: unset)."""
    if setting == "cpu" or (setting == "auto" and cuda_count == 0):
        return [("cpu", {})]
    if setting.startswith("cuda:"):
        return [(setting, {})]
    if cuda_count == 0:
        raise UsageError(f"training.device is {setting}, but this machine sees no CUDA GPU")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else \
        [str(i) for i in range(cuda_count)]
    return [(f"cuda:{i}", {"CUDA_VISIBLE_DEVICES": gpu})
            for i, gpu in enumerate(ids[:cuda_count])]


def workers(setting: str, k: int, cores: int, cuda_count: int,
            visible: str | None = None) -> list[Worker]:
    """K workers per device, each with ``cores // workers`` threads (at least 1)."""
    found = devices(setting, cuda_count, visible)
    threads = str(max(1, cores // (k * len(found))))
    return [Worker(name, {**env, **{v: threads for v in THREAD_VARIABLES}})
            for name, env in found for _ in range(k)]


def worker_args(args) -> list[str]:
    """The ``bench run`` arguments of a worker: the command's own selection, overrides and
    results root; no report and no progress bars (this process shows the runs)."""
    out = [str(args.suite)]
    for override in args.overrides:
        out += ["--set", override]
    if args.only:
        out += ["--only", args.only]
    out += ["--results", str(args.results), "--executor", "local", "--no-report", "--quiet"]
    return out + (["--rerun-stale"] if args.rerun_stale else [])


def run_suite(runs: Sequence[RunSpec], folder: store.Suite, args, team: Sequence[Worker],
              board: Board) -> Outcome:
    """Start ``team``, show the runs' progress until every worker has ended, and say
    what became of each run."""
    command = [sys.executable, "-m", "bench", "run", *worker_args(args)]
    procs: list[subprocess.Popen] = []

    def forward(signum, frame):  # a kill of this process stops the workers as it stops a run
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        for i, w in enumerate(team, 1):
            procs.append(subprocess.Popen(command, env={**os.environ, **w.env}))
            if not args.quiet:
                print(f"worker {i}/{len(team)} on {w.device} ({w.env['OMP_NUM_THREADS']} "
                      f"threads): pid {procs[-1].pid}", file=sys.stderr, flush=True)
        while any(p.poll() is None for p in procs):
            _show(runs, folder, board, final=False)
            time.sleep(POLL_S)
        out = _show(runs, folder, board, final=True)
    except BaseException as err:  # Ctrl-C reaches the workers too; they record their runs
        if not isinstance(err, KeyboardInterrupt):
            forward(signal.SIGTERM, None)
        for p in procs:
            p.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        board.close()
    if any(p.returncode for p in procs) and not out.failed:
        codes = ", ".join(str(p.returncode) for p in procs)
        out.failed.append(("(a worker)", f"a worker process ended with an error (exit codes "
                                         f"{codes}); its lines above say why"))
    return out


def _show(runs: Sequence[RunSpec], folder: store.Suite, board: Board, final: bool) -> Outcome:
    """Each run's state from its status.json on the board; with ``final``, runs still
    not done are ended as they stand."""
    out = Outcome()
    for spec in runs:
        status = folder.run(spec.run_id).refresh().status
        state = status.get("state")
        if state == "running":
            board.epoch(spec.run_id, status.get("epoch", 0))
        if state in ("done", "failed") or final:
            error = status.get("error") or ""
            board.end(spec.run_id, "train", state or "not started", error.split("\n")[0])
            if final and state == "running":  # claimed by a worker outside this command
                out.busy += 1
            elif final and state != "done":
                out.failed.append((spec.run_id, error or f"{state or 'not started'}"))
            elif final:
                out.trained.append(spec.run_id)
    return out
