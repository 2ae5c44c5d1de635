"""``bench evaluate (--checkpoint FILE | --logits FILE) SUITE.yaml [--only PATTERN]``: a
run of the suite evaluated from a checkpoint or from per-exit logits instead of training,
stored and reported like any other run, marked as imported."""
from __future__ import annotations

from pathlib import Path

import methods
from bench import fileio, store
from bench.commands.common import folder_option, render, selected_runs
from bench.config import load_suite
from bench.errors import UsageError
from bench.executors.common import rebuild_summary
from bench.fingerprint import fingerprint
from bench.pipeline import importing
from bench.pipeline.runner import method_options
from bench.pipeline.setup import DataCache


def _one_run(suite, pattern):
    runs = selected_runs(suite, pattern)
    if len(runs) != 1:
        raise UsageError(f"{suite.path}: {len(runs)} runs match; an imported file replaces "
                         f"one run: choose it with --only (run ids: "
                         f"{', '.join(r.run_id for r in runs)})")
    return runs[0]


def main(args) -> int:
    if bool(args.checkpoint) == bool(args.logits):
        raise UsageError("bench evaluate needs exactly one of --checkpoint FILE and "
                         "--logits FILE")
    suite = load_suite(args.suite, args.overrides)
    spec = _one_run(suite, args.only)
    results = folder_option(Path(args.results), "--results", create=True)
    if not args.no_report:
        folder_option(Path(args.reports), "--reports", create=True)
    folder = store.Suite(results / suite.slug)
    with fileio.locked(folder.summary_lock_path):  # suite-folder files are written under it
        folder.check_owner(suite.name)
        if not folder.has_suite_json():
            folder.write_suite(suite.resolved(), [r.run_id for r in suite.runs])
    code = fingerprint(suite.config.plugins)
    if args.checkpoint:
        options, _ = method_options(spec, folder, suite.path)
        run = importing.import_checkpoint(spec, folder, Path(args.checkpoint), DataCache(),
                                          methods.create(spec.method_name, **options), code)
    else:
        run = importing.import_logits(spec, suite.config, folder, Path(args.logits), code)
    rebuild_summary(folder)
    budgeted = ", ".join(f"{b['accuracy']:.2f}% at {b['mmacs']:.3g} MMACs"
                         for b in (run.metrics or {}).get("budgeted") or [])
    print(f"{run.run_id}: imported ({run.imported['kind']}); top-1 of the last exit "
          f"{run.metrics['anytime'][-1]['top1']:.2f}%; budgeted: {budgeted or '-'}")
    if not args.no_report:
        render(Path(args.results), Path(args.reports), [suite.slug])
    return 0
