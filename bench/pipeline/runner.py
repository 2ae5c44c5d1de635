"""Running one run: set up -> train (resumable) -> predictions -> metrics, written through
the store into ``results/<suite>/<run_id>/`` (docs/results-format.md).

A finished run is never retrained here; what a run needs (finished, stale, claimed to
train) is decided first by bench.pipeline.plan, and executors (bench.executors) claim,
call :func:`run_one` and record.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from bench import store
from bench.config import RunSpec
from bench.evaluate import compute_metrics
from bench.pipeline import distributed, ms_budgets
from bench.pipeline.distributed import Dist
from bench.pipeline.metrics import rule_options
from bench.pipeline.setup import DataCache, environment, set_up
from bench.pipeline.train import Trainer
from bench.pipeline.tuning import tuned_values
from bench.store import rules as R

log = logging.getLogger("bench.pipeline")


@dataclass
class RunContext:
    suite: store.Suite  # results/<suite slug>/
    data: DataCache
    dist: Dist
    code: dict  # the current code's fingerprint (bench.fingerprint.fingerprint)
    progress: object = None  # bench.pipeline.progress.Progress or None
    suite_file: str = "<suite>"  # for error messages


def method_options(spec: RunSpec, suite: store.Suite, suite_file: str = "<suite>"
                   ) -> tuple[dict, dict | None]:
    """The run's method options with every ``tuned`` one replaced by its study's best
    value, and where they came from (None for runs that tune nothing)."""
    options = spec.method_options
    if not spec.method.tuned:
        return options, None
    values, source = tuned_values(spec, suite, suite_file)
    return {**options, **values}, {**source, "options": values}


def evaluate_saved(spec: RunSpec, run: store.Run) -> None:
    """Recompute metrics.json of a finished run from its saved predictions (e.g. when an
    evaluation option or an exit rule was added to the suite later); nothing is retrained.
    Keys and rules the suite no longer asks for are kept."""
    metrics = compute_metrics(run.load_predictions(), list(spec.exit_mmacs),
                              list(spec.budgets_mmacs), **rule_options(spec.evaluation))
    old = run.metrics or {}
    metrics[R.RULES] = R.merged(old.get(R.RULES), metrics[R.RULES])
    tuned = old.get("tuned") or run.config.get("tuned")
    if tuned:
        metrics["tuned"] = tuned
    run.write_metrics({**old, **metrics})


def metrics_outdated(spec: RunSpec, run: store.Run) -> bool:
    """Whether a finished run's metrics lack an evaluation the suite now asks for: the
    calibration report or an exit rule (a run without a held-out split has no curve and
    gets no rules: nothing can be fitted for it)."""
    if not run.has_predictions:
        return False
    metrics = run.metrics or {}
    if spec.evaluation.calibration and "calibration" not in metrics:
        return True
    ev = spec.evaluation
    return bool(metrics.get("curve")) and bool(R.missing(metrics, ev.criteria, ev.combiners,
                                                         ev.global_threshold))


def run_one(spec: RunSpec, ctx: RunContext) -> str:
    """Train and evaluate one run; returns its final state ('done' or 'failed').

    Any exception of the run (on any rank) is recorded in status.json (state failed, the
    error in one line and its traceback) instead of ending the suite; KeyboardInterrupt
    (Ctrl-C, or SIGTERM where the command turns it into one) is recorded as state
    interrupted and goes through, as does SystemExit. Under torchrun the ranks agree on
    the outcome first (bench.pipeline.distributed.agree)."""
    run = ctx.suite.run(spec.run_id)
    try:
        _start(spec, run, ctx)
        error, trace = None, None
    except Exception as err:
        error, trace = f"{type(err).__name__}: {err}", traceback.format_exc()
    except KeyboardInterrupt:
        if ctx.dist.is_main:
            _interrupted(spec, run, ctx)
        raise
    errors = distributed.agree(error, ctx.dist)
    if not ctx.dist.is_main:
        return "failed" if any(errors) else "done"
    if any(errors):
        return _failed(spec, run, ctx, errors, trace)
    try:
        run.set_status("done", epoch=spec.training.epochs, epochs=spec.training.epochs,
                       fingerprint=ctx.code["sha256"])
    except Exception as err:
        return _failed(spec, run, ctx, [f"{type(err).__name__}: {err}"], traceback.format_exc())
    return "done"


def _start(spec: RunSpec, run: store.Run, ctx: RunContext) -> None:
    options, tuned = method_options(spec, ctx.suite, ctx.suite_file)
    if ctx.dist.is_main:
        extra = {"tuned": tuned} if tuned else {}
        run.write_config({"suite": spec.suite_slug, "run_id": spec.run_id, **spec.config,
                          **extra})
        resumed = run.status.get("epoch", 0) if run.checkpoint_path.exists() else 0
        run.set_status("running", epoch=resumed, epochs=spec.training.epochs,
                       fingerprint=ctx.code["sha256"])
    _train_and_evaluate(spec, run, ctx, options, tuned)


def _interrupted(spec: RunSpec, run: store.Run, ctx: RunContext) -> None:
    """Rank 0: a started run's status.json says interrupted, at the epoch it last recorded
    (the next run of the suite resumes from that epoch's checkpoint); where it cannot be
    written, it still says running."""
    status = run.refresh().status  # from the file: the interrupt may have cut an update short
    if status.get("state") != "running":
        return
    epoch = status.get("epoch", 0)
    try:
        run.set_status("interrupted", epoch=epoch if isinstance(epoch, int) else 0,
                       epochs=spec.training.epochs, fingerprint=ctx.code["sha256"])
    except Exception as err:
        log.warning("%s was interrupted and its status.json could not say so (%s: %s)",
                    spec.run_id, type(err).__name__, err)


def _failed(spec: RunSpec, run: store.Run, ctx: RunContext, errors: list, trace: str | None
            ) -> str:
    """Rank 0: status.json says failed, with the first error (naming its rank under
    torchrun) and the traceback of rank 0's, where it has one."""
    ranks = [(r, e) for r, e in enumerate(errors) if e]
    error = ranks[0][1] if len(errors) == 1 else "; ".join(f"rank {r}: {e}" for r, e in ranks)
    epoch = run.status.get("epoch", 0)
    try:
        run.set_status("failed", epoch=epoch if isinstance(epoch, int) else 0,
                       epochs=spec.training.epochs, fingerprint=ctx.code["sha256"],
                       error=error, traceback=trace)
    except Exception as err:  # e.g. the disk is full: say so, the suite goes on
        log.warning("%s failed (%s) and the failure could not be recorded in its "
                    "status.json (%s: %s)", spec.run_id, error, type(err).__name__, err)
    return "failed"


def _train_and_evaluate(spec: RunSpec, run: store.Run, ctx: RunContext, options: dict,
                        tuned: dict | None) -> None:
    training, dist = spec.training, ctx.dist
    s = set_up(spec, options, ctx.data, training, dist)
    if dist.is_main:
        run.write_environment(environment(s.device, ctx.code))
        run.write_heldout_index(s.splits.heldout_indices)
        run.write_costs(list(spec.exit_mmacs), s.params, list(spec.input_size))
    on_step, show = ctx.progress.callbacks() if ctx.progress else (None, None)

    def on_epoch(info: dict) -> None:
        run.set_status("running", epoch=info["epoch"], epochs=training.epochs,
                       fingerprint=ctx.code["sha256"])
        if show:
            show(info)

    trainer = Trainer(s.model, s.method, s.splits, training, spec.seed, s.device,
                      run.checkpoint_path, dist, on_epoch=on_epoch, on_step=on_step,
                      wrap=distributed.wrapper(dist, s.device),
                      after_epoch=(lambda m: distributed.average_buffers(m, dist))
                      if dist.world_size > 1 else None)
    state = trainer.fit()
    # every rank predicts its shard; rank 0 gathers
    preds = distributed.predict_splits(s.model, s.method, s.splits, training.eval_batch_size,
                                       s.device, dist, channels_last=trainer.channels_last)
    if not dist.is_main:
        return
    run.write_history(state.history)
    run.write_training(trainer.training_record(state))
    run.save_predictions(preds)
    metrics = compute_metrics(preds, list(spec.exit_mmacs), list(spec.budgets_mmacs),
                              **rule_options(spec.evaluation))
    if tuned:
        metrics["tuned"] = tuned
    run.write_metrics(metrics)
    ms_budgets.settle(spec, run)  # budgets.ms: latency measured first where missing
