"""Time and resident memory from `bench run` starting until its first run starts: the
quickstart with seeds 0..N-1, results in a temporary folder, stopped there (nothing is
trained). docs/scaling.md, "Many seeds", has the figures it gave.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/time-to-first-run.py 1000
"""
import sys
import tempfile
import time

import psutil

from bench import cli
from bench.pipeline import runner

seeds = int(sys.argv[1])
started = time.perf_counter()


def first_run(spec, ctx):
    rss = psutil.Process().memory_info().rss / 2**20
    print(f"{seeds} seeds: the first run starts after {time.perf_counter() - started:.1f} s, "
          f"{rss:.0f} MiB resident")
    raise SystemExit(0)


runner.run_one = first_run
with tempfile.TemporaryDirectory() as results:
    cli.main(["run", "suites/quickstart.yaml", "--results", results, "--no-report", "--quiet",
              "--set", f"seeds=[{','.join(map(str, range(seeds)))}]"])
