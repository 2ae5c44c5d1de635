"""The results store: the one place that reads and writes ``results/``.

    suite = store.Suite(results / slug)      # suite.json, summary.csv, tuning/, run folders
    run = suite.run(run_id)                  # one run folder: read properties, write methods

The runner writes through it, the report and ``bench results`` read through it, and the
tests build their stores with it. The format is docs/results-format.md.
"""
from bench.fileio import read_json
from bench.store.files import COST_COUNTER, SUMMARY_COLUMNS, now
from bench.store.run import Run, load_checkpoint, save_checkpoint
from bench.store.suite import Suite, list_suites

__all__ = ["COST_COUNTER", "Run", "SUMMARY_COLUMNS", "Suite", "list_suites", "load_checkpoint",
           "now", "read_json", "save_checkpoint"]
