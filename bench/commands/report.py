"""``bench report [SUITE ...]``: render reports/ from the results store alone."""
from __future__ import annotations

from pathlib import Path

from bench.commands.common import folder_option, render, suite_folder


def main(args) -> int:
    results = folder_option(Path(args.results), "--results", create=False)
    suites = [suite_folder(s, results).slug for s in args.suites] or None
    render(results, folder_option(Path(args.reports), "--reports", create=True), suites)
    return 0
