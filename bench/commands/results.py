"""``bench results SUITE``: the comparison table of a suite, from the results store."""
from __future__ import annotations

from pathlib import Path

from bench.commands.common import folder_option, suite_folder
from bench.fingerprint import current
from bench.report import tables


def main(args) -> int:
    results = folder_option(Path(args.results), "--results", create=False)
    folder = suite_folder(args.suite, results)
    code = current(folder.plugins)
    stale = [r.run_id for r in folder.stale_runs(code)]
    print(tables.format_terminal(tables.comparison(folder, code), stale, folder.baseline))
    return 0
