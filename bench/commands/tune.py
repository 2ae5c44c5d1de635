"""``bench tune SUITE.yaml``: run, resume or join the Optuna study of every run the suite's
``tune:`` section selects (docs/tuning.md); with ``--executor ray`` or ``slurm``, several
tuning workers (actors, jobs) share each study."""
from __future__ import annotations

import sys
from pathlib import Path

from bench import fileio, store
from bench.commands.common import folder_option
from bench.config import load_suite, select_targets
from bench.errors import SuiteError, UsageError
from bench.executors import ray as ray_executor, slurm as slurm_executor
from bench.executors.common import chosen
from bench.pipeline.setup import DataCache
from bench.pipeline.tuning import normalize_storage, tune_one


def main(args) -> int:
    suite = load_suite(args.suite, args.overrides)
    tc = suite.config.tune
    if tc is None:
        raise SuiteError(suite.path, "tune", "the suite has no tune: section (see docs/tuning.md)")
    targets = select_targets(suite, args.only)
    if not targets:
        raise UsageError(f"--only {args.only!r} matches none of the runs tune: selects")
    results = folder_option(Path(args.results), "--results", create=True)
    folder = store.Suite(results / suite.slug)
    with fileio.locked(folder.summary_lock_path):  # suite-folder files are written under it
        folder.check_owner(suite.name)
        if not folder.has_suite_json():
            folder.write_suite(suite.resolved(), [r.run_id for r in suite.runs])
    folder.tuning_dir.mkdir(parents=True, exist_ok=True)  # only once the folder is the suite's
    storage_url = normalize_storage(args.storage or folder.default_storage())
    executor = chosen(suite, args.executor, args.ray_address)
    if executor.name != "local":  # tuning workers as Ray actors or SLURM jobs
        if executor.name == "ray":
            done = ray_executor.tune(suite, targets, folder, storage_url, executor.ray)
        else:
            done = slurm_executor.tune(suite, targets, folder, storage_url, executor.slurm)
        if done:  # each study's best-trial file, written by the driver, and how it stands
            data = DataCache()
            for spec in targets:
                tune_one(spec, tc, folder, storage_url, data, optimize=False,
                         log=lambda *a, **k: print(*a))
        return 0
    data = DataCache()
    data.get(suite.config.dataset, tc.seed)  # missing data fails before any study
    for spec in targets:
        tune_one(spec, tc, folder, storage_url, data,
                 log=lambda *a, **k: print(*a, **{"file": sys.stdout, **k}),
                 progress=not args.quiet)
    return 0
