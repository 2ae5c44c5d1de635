"""Terminal output on stderr: one line per run of a suite, and while a run trains one tqdm
bar in its place that moves with every training step.

The bar counts training images over the whole run (all epochs and stages), so tqdm's rate
is images per second and its ETA the rest of the run's training; its postfix shows the
epoch, the step within the epoch, the running loss of the epoch so far (mean over the
active exits) and the last epoch's held-out top-1 per exit. When the run ends the bar is
replaced by the run's one line (``[run 2/6] <run id> -> done in 41 s``). Under torchrun
only rank 0 draws (the trainer calls back on rank 0 only; rank 0 counts every rank's
images). ``bench tune`` draws the same bar for each trial (:class:`TrainingBar`).

On a terminal the bar redraws in place at most every 0.2 s. When stderr is a file or a pipe
(a batch job's log, ``| tee``) there is no bar to redraw: the same text is written as a
line of its own every 10 s (no carriage returns, no erasing), so that the log reads line by
line in an editor, ``less`` or ``tail -f``.
"""
from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm

from bench.config import RunSpec

TTY_INTERVAL, LOG_INTERVAL = 0.2, 10.0
# "[run 2/6] joint s0  40%|███     | 412.50 img/s, ETA 00:23, epoch 2/5 step 13/47 loss ..."
BAR = "{desc} {percentage:3.0f}%|{bar:8}| {rate_fmt}, ETA {remaining}{postfix}"
PHASES = {1: "backbone alone", 2: "the method"}  # the disjoint and mixed regimes' phases


def on_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


def _top1(values) -> str:
    return " ".join("-" if math.isnan(v) else f"{v:.1f}" for v in values)


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


class TrainingBar:
    """One bar for one training (a run, or a tuning trial). ``on_step`` and ``on_epoch``
    are the trainer's callbacks (bench.pipeline.train.Trainer); the bar opens at the first
    step, where the steps per epoch are known, and starts where a resumed run stands.
    ``lines`` (default: stderr is not a terminal) writes each frame as a line of its own."""

    def __init__(self, desc: str, interval: float | None = None, lines: bool | None = None):
        self.desc = desc
        self.lines = not on_terminal() if lines is None else lines
        self.interval = ((LOG_INTERVAL if self.lines else TTY_INTERVAL) if interval is None
                         else interval)
        # Until the first step: the description alone (data, model and method being set up).
        self.bar: tqdm | LogLines | None = (
            LogLines(desc) if self.lines else
            tqdm(desc=desc, bar_format="{desc}: setting up", file=sys.stderr, leave=False))
        self.opened = False
        self.heldout = ""  # the last epoch's held-out top-1, shown until the next epoch
        self._shown = -math.inf  # when the postfix was last computed

    def _open(self, info: dict) -> None:
        self.close()
        self.opened = True
        steps = info["steps"]
        total, initial = info["epochs"] * steps, info["epoch"] * steps + info["step"] - 1
        if self.lines:
            self.bar = LogLines(self.desc, total=total, initial=initial, images=info["images"])
            return
        self.bar = tqdm(total=total, initial=initial, desc=self.desc,
                        unit=" img", unit_scale=info["images"], file=sys.stderr,
                        bar_format=BAR,
                        # redrawn by on_step alone, so that the count and the postfix drawn
                        # together are of the same step (tqdm's own timer would draw the
                        # count with a postfix up to one interval old); smoothing 0: the rate
                        # and ETA are the average since the bar opened
                        mininterval=math.inf, smoothing=0, dynamic_ncols=True,
                        leave=False)

    def on_step(self, info: dict) -> None:
        """After every training step: ``epoch`` (0-based) of ``epochs``, ``step`` (1-based)
        of ``steps`` in the epoch, ``images`` in this step over every rank, ``stage``
        (1-based) of ``stages``, ``loss_sum``: per computed exit, the sum of the epoch's
        step losses so far (a tensor, read only when the postfix is redrawn), and the
        ``active`` exits (0-based)."""
        if not self.opened:
            self._open(info)
        self.bar.update(1)
        now = time.monotonic()
        if now - self._shown >= self.interval:
            self._shown = now
            self.bar.set_postfix_str(self._postfix(info))  # and redraws

    def _postfix(self, info: dict) -> str:
        sums = info["loss_sum"].tolist()  # one device sync per redraw, not per step
        active = [n for n in info["active"] if n < len(sums)]
        loss = sum(sums[n] for n in active) / max(1, len(active)) / info["step"]
        stage = f"stage {info['stage']}/{info['stages']} " if info["stages"] > 1 else ""
        if info.get("phase"):  # the disjoint and mixed regimes (methods.regimes)
            stage = f"phase {info['phase']} ({PHASES[info['phase']]}) {stage}"
        return (f"{stage}epoch {info['epoch'] + 1}/{info['epochs']} step {info['step']}/"
                f"{info['steps']} loss {loss:.3f}{self.heldout}")

    def on_epoch(self, info: dict) -> None:
        """After every epoch (``rows``: the epoch's history rows, one per exit)."""
        self.heldout = f" | held-out top-1 {_top1(r['heldout_top1'] for r in info['rows'])}"
        self._shown = -math.inf  # the next step redraws the postfix

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LogLines:
    """The bar's frames as lines, for logs: the same text as the tqdm bar (tqdm's own
    formatter), written with a newline when the postfix is set, never redrawn or erased."""

    def __init__(self, desc: str, total: int | None = None, initial: int = 0,
                 images: int = 1):
        self.desc, self.total, self.initial, self.images = desc, total, initial, images
        self.n = initial
        self.start = time.monotonic()
        if total is None:  # before the first step
            print(f"{desc}: setting up", file=sys.stderr, flush=True)

    def update(self, steps: int) -> None:
        self.n += steps

    def set_postfix_str(self, postfix: str) -> None:
        line = tqdm.format_meter(self.n, self.total, time.monotonic() - self.start,
                                 prefix=self.desc, unit=" img", unit_scale=self.images,
                                 bar_format=BAR, postfix=postfix, initial=self.initial)
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class Progress:
    """A suite's progress: one line per run, a :class:`TrainingBar` while a run trains."""

    def __init__(self, total_runs: int, enabled: bool = True, interval: float | None = None):
        self.total = total_runs
        self.enabled = enabled
        self.interval = interval
        self.training: TrainingBar | None = None
        self._run: tuple[str, float] | None = None  # (the run's line, its start time)

    def start_run(self, index: int, spec: RunSpec, note: str = "") -> None:
        """A run that is skipped (``note`` says why) gets its line now; a run that trains
        gets a bar until :meth:`end_run` writes its line."""
        line = f"[run {index}/{self.total}] {spec.run_id}"
        if not self.enabled:
            return
        if note:
            print(line + note, file=sys.stderr, flush=True)
            return
        self._run = (line, time.monotonic())
        self.training = TrainingBar(f"[run {index}/{self.total}] {spec.method_label} "
                                    f"s{spec.seed}", self.interval)

    def callbacks(self):
        """(on_step, on_epoch) for the trainer of the run just started, or (None, None)
        when there is nothing to draw."""
        if self.training is None:
            return None, None
        return self.training.on_step, self.training.on_epoch

    def end_run(self, state: str, message: str = "") -> None:
        if self.training is not None:
            self.training.close()
            self.training = None
        if self.enabled and self._run is not None:
            line, started = self._run
            took = "" if message else f" in {_duration(time.monotonic() - started)}"
            print(f"{line} -> {state}{took}{': ' + message if message else ''}",
                  file=sys.stderr, flush=True)
        self._run = None
