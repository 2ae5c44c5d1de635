"""Progress output: a suite-level line per run and a tqdm bar per run (on stderr)."""
from __future__ import annotations

import math
import sys

from tqdm import tqdm

from bench.config import RunSpec
from bench.store import Run


def _fmt(values) -> str:
    return " ".join("-" if math.isnan(v) else f"{v:.2f}" for v in values)


class Progress:
    def __init__(self, total_runs: int, enabled: bool = True):
        self.total = total_runs
        self.enabled = enabled
        self.bar: tqdm | None = None

    def start_run(self, index: int, spec, note: str = "") -> None:
        if self.enabled:
            print(f"[run {index}/{self.total}] {spec.run_id}{note}", file=sys.stderr, flush=True)

    def epoch_callback(self, spec: RunSpec, run: Run):
        """The trainer's per-epoch callback drawing this run's bar (None when disabled);
        a resumed run's bar starts at the epochs its checkpoint holds."""
        if not self.enabled:
            return None
        epochs = spec.training.epochs
        done = run.status.get("epoch", 0) if run.checkpoint_path.exists() else 0
        self.bar = tqdm(total=epochs, initial=done, desc=f"{spec.method_label} s{spec.seed}",
                        unit="epoch", file=sys.stderr, dynamic_ncols=True, leave=False)

        def on_epoch(info: dict) -> None:
            rows = info["rows"]
            self.bar.n = info["epoch"]
            self.bar.set_postfix_str(
                f"stage {info['stage']} | loss {_fmt(r['train_loss'] for r in rows)} | "
                f"held-out top1 {_fmt(r['heldout_top1'] for r in rows)}")
            self.bar.refresh()

        return on_epoch

    def end_run(self, state: str, message: str = "") -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled:
            print(f"  -> {state}{': ' + message if message else ''}", file=sys.stderr, flush=True)
