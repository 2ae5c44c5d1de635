"""``bench report [SUITE ...]``: render reports/ from the results store alone."""
from __future__ import annotations

from pathlib import Path

from bench.commands.common import render, suite_folder


def main(args) -> int:
    results = Path(args.results)
    suites = [suite_folder(s, results).slug for s in args.suites] or None
    render(results, Path(args.reports), suites)
    return 0
