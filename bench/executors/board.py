"""The driver's view of runs that train elsewhere (Ray tasks, SLURM jobs): one progress line
per run, on stderr.

On a terminal every run has its own line, redrawn in place as its epochs come in (a tqdm
bar per run). Elsewhere (a log file, a CI job) a run's line is printed once, when it ends:
``[run 2/4] <run id> -> done`` (or failed, with the error's first line; or skipped, stale,
taken by another worker).
"""
from __future__ import annotations

import sys
from typing import Sequence

from tqdm import tqdm

from bench.config import RunSpec

# what bench.pipeline.plan said of a run that did not train, in its one line
ENDED = {"finished": "done, skipped", "busy": "taken by another worker, skipped",
         "stale": "stale, kept"}


class Board:
    def __init__(self, runs: Sequence[RunSpec], enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.index = {spec.run_id: i for i, spec in enumerate(runs)}
        self.specs = {spec.run_id: spec for spec in runs}
        self.bars: dict[str, tqdm] = {}
        self.ended: set[str] = set()

    def _label(self, run_id: str) -> str:
        return f"[run {self.index[run_id] + 1}/{len(self.index)}] {run_id}"

    def _bar(self, run_id: str) -> tqdm:
        if run_id not in self.bars:
            spec = self.specs[run_id]
            self.bars[run_id] = tqdm(total=spec.training.epochs, desc=self._label(run_id),
                                     unit="epoch", file=self.stream, position=self.index[run_id],
                                     dynamic_ncols=True, leave=True)
        return self.bars[run_id]

    def epoch(self, run_id: str, epoch: int, text: str = "") -> None:
        """A run finished ``epoch`` epochs (``text``: its losses and accuracies)."""
        if self.live and run_id not in self.ended:
            bar = self._bar(run_id)
            bar.n = epoch
            bar.set_postfix_str(text, refresh=False)
            bar.refresh()

    def end(self, run_id: str, action: str, state: str | None = None, error: str = "") -> None:
        """A run's outcome (bench.executors.common.Result's action and state)."""
        if run_id in self.ended:
            return
        self.ended.add(run_id)
        what = state if action == "train" else ENDED.get(action, action)
        if error and what == "failed":
            what += f": {error}"
        if self.live:
            bar = self._bar(run_id)
            bar.set_postfix_str(f"-> {what}", refresh=False)
            bar.close()
        elif self.enabled:
            print(f"{self._label(run_id)} -> {what}", file=self.stream, flush=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
