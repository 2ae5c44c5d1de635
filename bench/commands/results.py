"""``bench results SUITE``: the comparison table of a suite, from the results store."""
from __future__ import annotations

from pathlib import Path

from bench.commands.common import suite_folder
from bench.report import tables


def main(args) -> int:
    folder = suite_folder(args.suite, Path(args.results))
    print(tables.format_terminal(tables.comparison(folder)))
    return 0
