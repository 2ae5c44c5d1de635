"""What a run needs, decided by the pipeline, with the work that needs no training done
here; executors (bench.executors) only claim, run and record.

:func:`plan` returns a :class:`Plan` whose ``action`` is one of

- ``finished``: done by the current code; any evaluation the suite now asks for that its
  metrics.json lacks is computed from its saved predictions (never retrained);
- ``stale``: done by other code (another code fingerprint): kept and re-evaluated alike;
  with ``rerun_stale`` its outputs go to ``previous/`` and it trains again from scratch;
- ``busy``: another worker holds its claim;
- ``train``: claimed (held until :meth:`Plan.release`) and tidied: temporary files of
  killed writes deleted, unreadable files set aside (a broken checkpoint: it starts
  over), a broken metrics.json computed again from the saved predictions. An unfinished
  run of other code resumes (or, with ``rerun_stale``, starts over). The executor calls
  bench.pipeline.runner.run_one, then releases;
- ``failed``: an error while planning, for this run alone, said in one line.

``claim=False`` is for a driver handing runs to workers that plan again where they run
(Ray tasks, SLURM jobs): it settles finished and stale runs, any other is ``train``
unclaimed. Also here: suite.json before the runs and summary.csv after, under the suite
lock, broken suite files set aside.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from bench import fileio, store
from bench.config import RunSpec, Suite
from bench.fileio import UnreadableFile
from bench.fingerprint import short
from bench.pipeline import claims, ms_budgets, runner
from bench.pipeline.metrics import trust_outdated

TRAIN, FINISHED, STALE, BUSY, FAILED = "train", "finished", "stale", "busy", "failed"

warn = logging.getLogger("bench.pipeline").warning  # broken files: "warning: ..." lines


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def one_line(error: str) -> str:
    """An error's first non-empty line, at most 300 characters."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


@dataclass
class Plan:
    action: str  # train | finished | stale | busy | failed
    claim: claims.Claim | None = None  # held for a run to train (claim=True)
    error: str = ""  # of a failed plan: "<exception type>: <message>"

    def release(self) -> None:
        if self.claim is not None:
            self.claim.release()
            self.claim = None


def plan(spec: RunSpec, run: store.Run, code: str, rerun_stale: bool = False,
         claim: bool = True) -> Plan:
    """What ``run`` needs under the current code (``code``: its sha256 fingerprint), with
    the work that needs no training done (module docstring)."""
    try:
        return _plan(spec, run, code, rerun_stale, claim)  # releases its claim if it raises
    except Exception as err:
        message = f"{type(err).__name__}: {err}"
        say(f"{spec.run_id} failed: {one_line(message)}")
        return Plan(FAILED, error=message)


def _is_finished(run: store.Run, code: str, rerun_stale: bool) -> bool:
    return run.is_done() and not (rerun_stale and run.is_stale(code))


def _plan(spec: RunSpec, run: store.Run, code: str, rerun_stale: bool, claim: bool) -> Plan:
    if _is_finished(run, code, rerun_stale):
        return _settle(spec, run, code)
    if not claim:
        return Plan(TRAIN)
    held = claims.try_claim(run.lock_path)
    if held is None:
        return Plan(BUSY)
    try:
        # Finished by another worker meanwhile, or only a broken metrics.json was missing.
        if (_is_finished(run, code, rerun_stale)
                or (tidy_run(spec, run) and _is_finished(run, code, rerun_stale))):
            held.release()
            return _settle(spec, run, code)
        if run.made_by_other_code(code):
            old = short(run.fingerprint)
            if rerun_stale:
                moved = run.move_aside(f"code-{old}")
                say(f"{spec.run_id} made by other code ({old}): its outputs moved to {moved}; "
                    "training it again from scratch")
            else:
                say(f"{spec.run_id} resumes a run started by other code ({old}); "
                    "--rerun-stale would start it over")
    except BaseException:
        held.release()
        raise
    return Plan(TRAIN, held)


def _settle(spec: RunSpec, run: store.Run, code: str) -> Plan:
    """A finished run, stale ones included, gets the evaluations it lacks from its saved
    predictions (no retraining: the trained model is what it was)."""
    if run.temporary_files():  # a killed evaluation from saved predictions left them
        held = claims.try_claim(run.lock_path)
        if held is not None:
            with held:
                run.remove_temporary()
    if metrics_outdated(spec, run):
        with fileio.locked(run.lock_path):
            if metrics_outdated(spec, run.refresh()):  # not done by a worker we waited for
                try:
                    runner.evaluate_saved(spec, run)
                except UnreadableFile as err:
                    raise UnreadableFile(err.path, f"{err.reason}; the run keeps its "
                                         "metrics.json without the evaluation it lacks") from err
                say(f"{spec.run_id} re-evaluated from its saved predictions (new evaluation "
                    "options or exit rules)")
    if ms_budgets.outdated(spec, run):
        with fileio.locked(run.lock_path):
            ms_budgets.settle(spec, run.refresh(), say)
    else:
        ms_budgets.settle(spec, run, say)  # says a problem it recorded again
    return Plan(STALE if run.is_stale(code) else FINISHED)


def metrics_outdated(spec: RunSpec, run: store.Run) -> bool:
    """Whether a finished run's metrics.json lacks an evaluation the suite now asks for:
    the calibration report or an exit rule (bench.pipeline.runner), or a trustworthy-exit
    block (anytime quality, which every run gets; risk control and prediction sets as
    asked; bench.pipeline.metrics.trust_outdated). Only runs with saved predictions."""
    return runner.metrics_outdated(spec, run) or (
        run.has_predictions and trust_outdated(spec.evaluation, run.metrics))


def tidy_run(spec: RunSpec, run: store.Run) -> bool:
    """Holding the run's claim: clean up after killed writers and set broken files aside;
    a finished run whose metrics.json was broken gets it back from its saved predictions
    (returns whether it did)."""
    _, moved = run.tidy()
    for name, why, where in moved:
        then = "; the run starts over" if name == store.files.CHECKPOINT else ""
        warn("%s is unreadable (%s); moved to %s%s", run.file(name), why, where.name, then)
    if not any(name == store.files.METRICS for name, _, _ in moved) or run.state != "done":
        return False
    try:
        runner.evaluate_saved(spec, run)
    except FileNotFoundError:
        return False  # no predictions: the run resumes from its checkpoint
    except UnreadableFile as err:
        where = store.files.set_aside(err.path)
        warn("%s is unreadable (%s); moved to %s", err.path, err.reason, where.name)
        return False
    say(f"{spec.run_id}: metrics.json computed again from its saved predictions")
    return True


# ---------------------------------------------------------------------------------------
# The suite folder


def prepare_folder(suite: Suite, folder: store.Suite) -> None:
    """suite.json written (and broken suite-level files set aside) before any run."""
    with fileio.locked(folder.summary_lock_path):
        _tidy_suite(folder)
        folder.write_suite(suite.resolved(), [r.run_id for r in suite.runs])


def rebuild_summary(folder: store.Suite) -> None:
    with fileio.locked(folder.summary_lock_path):
        _tidy_suite(folder)
        folder.write_summary()


def _tidy_suite(folder: store.Suite) -> None:
    _, moved = folder.tidy()
    for name, why, where in moved:
        warn("%s is unreadable (%s); moved to %s", folder.path / name, why, where.name)
