"""``bench results SUITE``: the comparison table of a suite, from the results store.

The table uses the suite's current runs (the ids the last ``bench run`` wrote into
suite.json) and says how many other runs the folder keeps; ``--set KEY=VALUE`` shows the
runs of the suite file with those overrides instead (other settings, on purpose)."""
from __future__ import annotations

from pathlib import Path

from bench.commands.common import folder_option, suite_folder
from bench.config import load_suite
from bench.errors import UsageError
from bench.fingerprint import current
from bench.report import tables


def main(args) -> int:
    results = folder_option(Path(args.results), "--results", create=False)
    folder = suite_folder(args.suite, results)
    if args.overrides:
        if not Path(args.suite).is_file():
            raise UsageError(f"--set needs a suite file, not the folder name {args.suite!r}")
        folder = folder.select([r.run_id for r in load_suite(args.suite, args.overrides).runs])
    code = current(folder.plugins)
    stale = [r.run_id for r in folder.stale_runs(code)]
    print(tables.format_terminal(tables.comparison(folder, code), stale, folder.baseline,
                                 folder.others_text()))
    return 0
