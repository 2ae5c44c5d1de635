"""``bench run SUITE.yaml``: train and evaluate every run of a suite that is not finished."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from bench import store
from bench.commands.common import (folder_option, not_a_file, os_error, render,
                                   selected_runs, sigterm_as_interrupt)
from bench.config import Suite, load_suite
from bench.errors import UsageError
from bench.executors import local, ray as ray_executor, side_by_side, slurm as slurm_executor
from bench.executors.board import Board
from bench.executors.common import Outcome, chosen
from bench.fingerprint import fingerprint
from bench.pipeline import distributed, runner, step_graphs
from bench.pipeline.progress import Progress
from bench.pipeline.speed import estimate
from bench.pipeline.setup import DataCache, pick_device


MANY_RUNS = 10_000  # past this, the dry run warns (docs/scaling.md, "Many seeds")


def print_dry_run(suite: Suite, runs) -> None:
    print(f"suite {suite.name!r}: {len(runs)} run(s); costs are fvcore multiply-adds (MMACs), "
          "cumulative per exit")
    for spec in runs:
        costs = ", ".join(f"{c:.2f}" for c in spec.exit_mmacs)
        budgets = ", ".join(f"{b:.2f}" for b in spec.budgets_mmacs) or "-"
        print(f"{spec.run_id}\n    backbone {spec.backbone_label}  method {spec.method_label}  "
              f"seed {spec.seed}\n    exits (MMACs): {costs}\n    budgets (MMACs): {budgets}")
    print(f"{len(runs)} run(s) over {len({r.seed for r in runs})} seed(s); each run's data "
          "is built when the run starts, one run's data in memory at a time")
    if len(runs) > MANY_RUNS:
        print(f"warning: {len(runs)} runs, more than {MANY_RUNS:,}: the run list is held in "
              "memory (about 9 KB a run) and summary.csv is read back from every run folder "
              "after each run; split the suite (--only, or several suites)", file=sys.stderr)


def main(args) -> int:
    k = side_by_side.runs_per_device(args.runs_per_device or 1)
    if args.estimate and not args.dry_run:
        raise UsageError("--estimate goes with --dry-run (bench run SUITE --dry-run "
                         "--estimate): it times steps and trains nothing")
    suite = load_suite(args.suite, args.overrides)
    runs = selected_runs(suite, args.only)
    if args.dry_run:
        print_dry_run(suite, runs)
        if args.estimate:
            estimate.print_estimate(estimate.estimate(runs))
        return 0
    results = not_a_file(Path(args.results), "--results")
    folder = store.Suite(results / suite.slug)
    for spec in runs:  # a tuned option whose study is missing: nothing is written
        runner.method_options(spec, folder, suite.path)
    executor = chosen(suite, args.executor, args.ray_address)
    data = DataCache()  # each run's data is built when it starts; the first run's now:
    if executor.name == "local":  # missing data fails before anything is written (the
        data.get(runs[0].dataset, runs[0].seed)  # workers of other executors look for it
                                                 # where they run)
    folder_option(results, "--results", create=True)
    if not args.no_report:  # found out now, not after the training
        folder_option(Path(args.reports), "--reports", create=True)
    code = fingerprint(suite.config.plugins)
    if executor.name != "local":
        out = _elsewhere(executor, suite, runs, folder, code, args, k)
        if out is None:  # submitted, not waited for
            return 0
        return _finish(out, args, suite)
    if k > 1:
        return _side_by_side(suite, runs, folder, args, k)
    dist = distributed.init_from_env(suite.config.training.device)
    step_graphs.check_device(suite.config.training.cuda_graphs,
                             pick_device(suite.config.training.device, dist))
    try:
        with sigterm_as_interrupt(enabled=dist.world_size == 1):
            out = local.run_suite(suite, runs, folder, data, dist,
                                  Progress(len(runs), enabled=not args.quiet and dist.is_main),
                                  code, rerun_stale=args.rerun_stale)
    except distributed.RanksDisagree:
        raise  # no orderly shutdown: the other ranks are inside a collective
    except BaseException:
        distributed.shutdown()
        raise
    distributed.shutdown()
    if not dist.is_main:
        return 1 if out.failed else 0
    return _finish(out, args, suite)


def _side_by_side(suite: Suite, runs, folder: store.Suite, args, k: int) -> int:
    """--runs-per-device K with the local executor: K worker processes per device."""
    if distributed.env_world()[2] > 1:
        raise UsageError("--runs-per-device starts worker processes of its own; start it "
                         "with python, not torchrun")
    training = suite.config.training
    team = side_by_side.workers(training.device, k, len(os.sched_getaffinity(0)),
                                torch.cuda.device_count(),
                                os.environ.get("CUDA_VISIBLE_DEVICES"))
    step_graphs.check_device(training.cuda_graphs, team[0].device)
    board = Board(runs, enabled=not args.quiet)
    return _finish(side_by_side.run_suite(runs, folder, args, team, board), args, suite)


def _elsewhere(executor, suite: Suite, runs, folder: store.Suite, code: dict, args,
               k: int = 1) -> Outcome | None:
    """The runs handed to Ray tasks or SLURM jobs; None when they were only submitted."""
    if distributed.env_world()[2] > 1:
        raise UsageError(f"--executor {executor.name} hands runs to workers of its own; "
                         "start it with python, not torchrun")
    board = Board(runs, enabled=not args.quiet)
    if executor.name == "ray":
        return ray_executor.run_suite(suite, runs, folder, executor.ray, code, board,
                                      rerun_stale=args.rerun_stale, runs_per_device=k)
    return slurm_executor.run_suite(suite, runs, folder, executor.slurm, code, board,
                                    rerun_stale=args.rerun_stale, runs_per_device=k)


def _finish(out: Outcome, args, suite: Suite) -> int:
    """The report, and what the user should know: stale, busy and failed runs. A report
    that cannot be written (a full disk) is said last, after the runs' summary: exit 1."""
    report_error = None
    if not args.no_report:
        try:
            render(Path(args.results), Path(args.reports), [suite.slug])
        except OSError as err:
            report_error = err
    if out.stale:
        print(f"{len(out.stale)} finished run(s) were made by other code (stale) and kept; "
              "`bench run --rerun-stale` trains them again", file=sys.stderr)
    if out.busy:
        print(f"{out.busy} run(s) were being run by another worker; rerun to pick up any it "
              "leaves unfinished", file=sys.stderr)
    if out.failed:
        print(f"{len(out.failed)} run(s) failed (the status.json of a run that started holds "
              "the traceback):", file=sys.stderr)
        for run_id, error in out.failed:
            print(f"  {run_id}: {error.splitlines()[0] if error else '(no message)'}",
                  file=sys.stderr)
    if report_error is not None:
        print(f"error: report not written: {os_error(report_error)}", file=sys.stderr)
    return 1 if out.failed or report_error is not None else 0
