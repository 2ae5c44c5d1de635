"""The CLI's commands; each takes parsed arguments and returns an exit code."""
from __future__ import annotations

import sys
from pathlib import Path

from bench.cli import UsageError
from bench.suite import Suite, load_suite, select


def _selected_runs(suite: Suite, pattern: str | None):
    runs = select(suite.runs, pattern) if pattern else suite.runs
    if not runs:
        raise UsageError(f"--only {pattern!r} matches no run of {suite.path}; run ids: "
                         + ", ".join(r.run_id for r in suite.runs))
    return runs


def _print_dry_run(suite: Suite, runs) -> None:
    print(f"suite {suite.name!r}: {len(runs)} run(s); costs are fvcore multiply-adds (MMACs), "
          "cumulative per exit")
    for spec in runs:
        costs = ", ".join(f"{c:.2f}" for c in spec.exit_mmacs)
        budgets = ", ".join(f"{b:.2f}" for b in spec.budgets_mmacs) or "-"
        print(f"{spec.run_id}\n    backbone {spec.backbone_label}  method {spec.method_label}  "
              f"seed {spec.seed}\n    exits (MMACs): {costs}\n    budgets (MMACs): {budgets}")


def run(args) -> int:
    """Train and evaluate the suite's runs. Several workers (and torchrun jobs) may run the
    same suite at once: each run is claimed with a lock in its folder for its duration
    (bench.claims), so no run is trained twice and a dead worker's run is resumed by the
    next one; summary.csv is rebuilt under a suite-level lock. Under torchrun every rank
    takes part in every run (bench.distributed) and rank 0 alone writes."""
    from bench import claims, distributed, runner
    from bench.progress import Progress

    suite = load_suite(args.suite, args.overrides)
    runs = _selected_runs(suite, args.only)
    if args.dry_run:
        _print_dry_run(suite, runs)
        return 0
    suite_dir = Path(args.results) / suite.slug
    for spec in runs:  # a tuned temperature whose study is missing: nothing is written
        runner.method_options(spec, suite_dir, suite.path)
    data = runner.DataCache()
    for seed in sorted({r.seed for r in runs}):  # missing data fails before anything is written
        data.get(suite.config["dataset"], seed)
    dist = distributed.init_from_env(suite.config["training"]["device"])
    try:
        failed, busy = _run_all(suite, runs, suite_dir, data, dist, args, claims, runner,
                                Progress(len(runs), enabled=not args.quiet and dist.is_main))
    finally:
        distributed.shutdown()
    if not dist.is_main:
        return 1 if failed else 0
    if not args.no_report:
        _render(Path(args.results), Path(args.reports), [suite.slug])
    if busy:
        print(f"{busy} run(s) were being run by another worker; rerun to pick up any it "
              "leaves unfinished", file=sys.stderr)
    if failed:
        print(f"{failed} run(s) failed; see status.json in their folders", file=sys.stderr)
    return 1 if failed else 0


def _run_all(suite, runs, suite_dir, data, dist, args, claims, runner, progress):
    from bench import distributed, store

    folder = store.Suite(suite_dir)

    def summary():
        with claims.locked(folder.summary_lock_path):
            folder.write_summary()

    if dist.is_main:
        folder.write_suite(suite.config, [r.run_id for r in suite.runs])
    ctx = runner.RunContext(suite_dir, data, dist, progress, suite_file=suite.path)
    failed = busy = 0
    for i, spec in enumerate(runs, 1):
        run_dir = folder.run(spec.run_id)
        claim, action = None, "skip"
        if dist.is_main:  # rank 0 claims the run and tells the other ranks what to do
            if not run_dir.is_done():
                claim = claims.try_claim(run_dir.lock_path)
                action = "busy" if claim is None else "skip" if run_dir.is_done() else "run"
            if action == "skip" and run_dir.is_done() and runner.metrics_stale(spec, run_dir):
                with claims.locked(run_dir.lock_path):
                    runner.evaluate_saved(spec, run_dir)
        action = distributed.broadcast(action, dist)
        if action != "run":
            busy += action == "busy"
            progress.start_run(i, spec, " (done, skipped)" if action == "skip"
                               else " (taken by another worker, skipped)")
            continue
        try:
            progress.start_run(i, spec)
            state = runner.run_one(spec, ctx)
            progress.end_run(state, run_dir.status.get("error") or "" if dist.is_main else "")
            failed += state == "failed"
        finally:
            if claim is not None:
                claim.release()
        if dist.is_main:
            summary()
    if dist.is_main:
        summary()
    return failed, busy


def _render(results: Path, reports: Path, suites: list[str] | None) -> None:
    try:
        from bench import report
    except ImportError as err:  # the report needs optional plotting packages
        print(f"report not rendered: {err}", file=sys.stderr)
        return
    index = report.render(results, reports, suites)
    print(f"report: {index}", file=sys.stderr)


def _suite_dir(name: str, results: Path) -> Path:
    """A suite given as a YAML file or as the name of its results folder."""
    path = Path(name)
    if path.suffix in {".yaml", ".yml"}:
        return results / load_suite(path).slug
    if not (results / name).is_dir():
        known = sorted(p.name for p in results.glob("*") if p.is_dir()) if results.is_dir() else []
        raise UsageError(f"no results for suite {name!r} in {results}/; "
                         f"suites with results: {', '.join(known) or 'none'}")
    return results / name


def results(args) -> int:
    from bench import tables

    suite_dir = _suite_dir(args.suite, Path(args.results))
    print(tables.format_terminal(tables.comparison(suite_dir)))
    return 0


def report(args) -> int:
    results_root = Path(args.results)
    suites = [_suite_dir(s, results_root).name for s in args.suites] or None
    _render(results_root, Path(args.reports), suites)
    return 0


def tune(args) -> int:
    from bench import tune as tuning

    return tuning.main(args)
