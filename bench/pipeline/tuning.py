"""Tuning a method's options with Optuna, on the held-out split only (``bench tune``).

A study tunes one (backbone label, method label) of a suite with the seed ``tune.seed``;
its name is deterministic (bench.config.tune.study_name), so rerunning resumes it and
several workers may share it. What it searches is the method's own knowledge: the options
marked ``tuned`` (or the method's whole search space) over ``tune.space``, one shared value
or one per exit (``methods.search_space``). Trial 0 is always the method's own defaults.

Every trial sets up the run exactly as the runner would (bench.pipeline.setup), trains it
with the suite's training recipe (``tune.epochs`` may shorten it), reports the mean
held-out top-1 over the exits after every epoch (``trial.report``; the pruner may stop it)
and returns the objective, computed from held-out logits only:

- ``budgeted`` (default): the held-out split is cut in two halves by a seeded permutation;
  thresholds are fitted on one half and accuracy is measured on the other at each of the
  suite's budgets, then the halves swap (2-fold cross-fitting); the value is the mean
  accuracy over budgets and folds;
- ``anytime``: the mean held-out top-1 over the exits.

The test split is never loaded into a trial. The best trial is written to
``results/<suite>/tuning/<study>.json``; a run with ``tuned`` options reads it
(:func:`tuned_values`).
"""
from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

import methods
from bench import evaluate, store
from bench.config import RunSpec, TuneConfig, study_name, tuned_options
from bench.data.splits import mix_seed
from bench.errors import SuiteError, UsageError
from bench.fileio import locked
from bench.pipeline.predict import predict
from bench.pipeline.progress import TrainingBar
from bench.pipeline.setup import DataCache, set_up
from bench.pipeline.train import NonFiniteLoss, Trainer

# Heartbeats let a worker mark the trial of a dead worker failed and retry its parameters.
HEARTBEAT_S, GRACE_S = 60, 180
INTERRUPTED = "interrupted"  # user attribute of a trial stopped by Ctrl-C or a signal


# ---------------------------------------------------------------------------------------
# What a study searches


def param_names(spec: RunSpec, per_exit: bool) -> dict[str, list[str]]:
    """option -> its Optuna parameter names, for every option the study searches."""
    space, n = methods.search_space(spec.method_name), len(spec.exit_mmacs)
    return {o: space[o].param_names(o, n, per_exit) for o in tuned_options(spec.method)}


def options_from_params(spec: RunSpec, params: dict, per_exit: bool) -> dict:
    """The searched options' values from a trial's parameters."""
    space, n = methods.search_space(spec.method_name), len(spec.exit_mmacs)
    return {o: space[o].value(o, params, n, per_exit) for o in tuned_options(spec.method)}


def default_params(spec: RunSpec, per_exit: bool) -> dict:
    """The method's own defaults as Optuna parameters: every study's trial 0."""
    defaults = methods.defaults(spec.method_name)
    return {name: float(defaults[o]) for o, names in param_names(spec, per_exit).items()
            for name in names}


class TunedValueMissing(SuiteError):
    """A run asks for ``tuned`` options but its study has no best trial yet."""


def tuned_values(spec: RunSpec, suite: store.Suite, suite_file: str = "<suite>"
                 ) -> tuple[dict, dict]:
    """(tuned option values, where they came from) for a run with ``tuned`` options: the
    best trial of its study, from ``results/<suite>/tuning/<study>.json``."""
    name = study_name(spec, spec.tune)
    info = suite.read_best(name)
    if info is None:
        option = spec.method.tuned[0]
        raise TunedValueMissing(
            suite_file, f"methods[{spec.method_label}].options.{option}",
            f"run {spec.run_id} uses {option}: tuned, but study {name!r} has no best trial "
            f"({suite.best_file(name)} is missing); run `python -m bench tune {suite_file}` "
            "first")
    source = {k: info[k] for k in ("study", "storage", "trial", "value", "params", "objective")}
    source["file"] = str(suite.best_file(name))
    return dict(info["options"]), source


# ---------------------------------------------------------------------------------------
# Objective


def heldout_objective(logits: torch.Tensor, targets: torch.Tensor, exit_mmacs, budgets,
                      objective: str, seed: int) -> dict:
    """The trial's value from held-out logits [N, M, C] only (see the module docstring)."""
    anytime = evaluate.anytime_accuracy(logits, targets)
    out = {"anytime": anytime, "anytime_mean": statistics.fmean(anytime)}
    if objective == "anytime":
        out["value"] = out["anytime_mean"]
        return out
    m = len(targets)
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(mix_seed(seed, 0x7E)))
    halves = perm[: m // 2], perm[m // 2:]
    folds = []
    for fit, score in (halves, halves[::-1]):  # thresholds on one half, accuracy on the other
        res = evaluate.accuracy_at_budgets(logits[:, fit], targets[fit], logits[:, score],
                                           targets[score], exit_mmacs, budgets)
        folds.append([r["accuracy"] for r in res])
    per_budget = [statistics.fmean(v) for v in zip(*folds)]
    out.update(budgets_mmacs=list(budgets), budgeted=per_budget,
               value=statistics.fmean(per_budget))
    return out


def objective(trial, spec: RunSpec, tc: TuneConfig, data: DataCache, workdir: Path,
              progress: bool = False) -> float:
    """Train the run with the trial's option values; its held-out objective value
    (``progress``: draw the training bar of bench.pipeline.progress on stderr)."""
    import optuna

    sp = tc.space
    params = {name: trial.suggest_float(name, sp.low, sp.high, log=sp.log)
              for names in param_names(spec, sp.per_exit).values() for name in names}
    options = {**spec.method_options, **options_from_params(spec, params, sp.per_exit)}
    training = spec.training.replace(epochs=tc.epochs or spec.training.epochs)
    s = set_up(spec, options, data, training)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")

    bar = TrainingBar(f"[trial {trial.number}] {spec.method_label}") if progress else None

    def on_epoch(info: dict) -> None:
        if bar:
            bar.on_epoch(info)
        # Intermediate value: mean held-out top-1 over the exits after this epoch.
        value = statistics.fmean(r["heldout_top1"] for r in info["rows"])
        trial.report(value, info["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"held-out mean top-1 {value:.2f} at epoch {info['epoch']}")

    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=f"trial{trial.number}-") as tmp:
        trainer = Trainer(s.model, s.method, s.splits, training, spec.seed, s.device,
                          Path(tmp) / "checkpoint.pt", on_epoch=on_epoch,
                          on_step=bar.on_step if bar else None)
        try:
            trainer.fit()
        except (KeyboardInterrupt, SystemExit):  # stopped, not a bad trial: see finished()
            trial.set_user_attr(INTERRUPTED, True)
            raise
        finally:
            if bar:
                bar.close()
    logits, targets = predict(s.model, s.method, s.splits.batches(
        "heldout", training.eval_batch_size, device=s.device),
        channels_last=trainer.channels_last)
    result = heldout_objective(logits, targets, spec.exit_mmacs, spec.budgets_mmacs,
                               tc.objective, tc.sampler.seed)
    for key in ("anytime", "anytime_mean", "budgeted"):
        if key in result:
            trial.set_user_attr(f"heldout_{key}", result[key])
    return result["value"]


# ---------------------------------------------------------------------------------------
# Studies


JOURNAL = "journal:"  # --storage journal:PATH, Optuna's append-only log file


def normalize_storage(url: str) -> str:
    """A storage URL every worker reads alike: a journal file's path made absolute (a
    worker of another executor may start in another folder)."""
    if url.startswith(JOURNAL):
        path = url[len(JOURNAL):]
        if not path:
            raise UsageError("--storage journal:PATH needs a file path, e.g. "
                             "journal:/shared/studies.log")
        return JOURNAL + str(Path(path).expanduser().resolve())
    return url


def open_storage(url: str):
    """The study storage of ``url``:

    - ``journal:PATH``: Optuna's JournalStorage over an append-only file (its own lock
      file beside it), for shared file systems where SQLite's locking is unsafe. It has no
      heartbeats: the trial of a worker that died stays RUNNING (it does not count toward
      ``tune.trials``: the next worker runs another in its place);
    - any SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://user:pw@host/db``):
      plain Optuna RDB storage (readable by optuna-dashboard), with heartbeats so that the
      trial of a worker that died is marked failed (by the next ``bench tune``, once its
      heartbeat is GRACE_S old) and its parameters retried once.

    A missing database driver or a server that cannot be reached is a UsageError naming
    the URL (its password hidden)."""
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        path = Path(url[len(JOURNAL):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    kwargs = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # writers take turns
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                  max_retry=1), **kwargs)
    except ModuleNotFoundError as err:  # SQLAlchemy's dialect needs a driver
        raise UsageError(f"--storage {redact(url)}: needs the Python package {err.name!r} "
                         "(pip install 'boostnet-bench[executors]' has psycopg for "
                         "postgresql+psycopg://)") from None
    except Exception as err:  # e.g. sqlalchemy.exc.OperationalError: no server there
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise UsageError(f"--storage {redact(url)}: cannot open the study database "
                         f"({type(err).__name__}: {first})") from None


def redact(url: str) -> str:
    """The storage URL without its password (it is written to the results folder)."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: nothing to hide in it
        return url


def _sampler(tc: TuneConfig, seed: int):
    import optuna
    if tc.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(tc: TuneConfig):
    import optuna
    return {"median": optuna.pruners.MedianPruner, "percentile": optuna.pruners.PercentilePruner,
            "threshold": optuna.pruners.ThresholdPruner,
            "none": optuna.pruners.NopPruner}[tc.pruner.name](**tc.pruner.params)


def _counts(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def fail_stale_trials(study) -> None:
    """Mark FAIL the RUNNING trials whose worker stopped beating (RDB storages: no
    heartbeat for GRACE_S seconds) and enqueue their retries, now rather than when this
    worker's first trial starts (which it would not, were the stale trial counted)."""
    import optuna
    with warnings.catch_warnings():  # marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def finished(study) -> int:
    """The trials that count toward ``tune.trials``: complete, pruned, and failed ones
    (a loss that diverged) that were neither interrupted nor replaced by a retry (a dead
    worker's trial, marked failed, is retried). RUNNING trials do not count: one whose
    worker died would otherwise hold its place forever (journal storage has no heartbeat)."""
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history") or ()}
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and t.number not in retried
                   and not t.user_attrs.get(INTERRUPTED)) for t in trials)


def _enough(study, target: int) -> None:
    """Stop this worker once ``target`` trials are finished (by every worker)."""
    if finished(study) >= target:
        study.stop()


def write_best(study, spec: RunSpec, tc: TuneConfig, suite: store.Suite, storage_url: str
               ) -> dict | None:
    """results/<suite>/tuning/<study>.json from the study's best complete trial."""
    import optuna
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    best = max(complete, key=lambda t: t.value)
    baseline = [t for t in complete if t.user_attrs.get("baseline")]
    per_exit = tc.space.per_exit
    return suite.write_best(
        study.study_name, storage=redact(storage_url), suite=spec.suite_slug,
        backbone=spec.backbone_label, method=spec.method_label, seed=spec.seed,
        objective=tc.objective, trial=best.number, value=best.value, params=best.params,
        options=options_from_params(spec, best.params, per_exit),
        heldout_anytime=best.user_attrs.get("heldout_anytime"),
        baseline=({"trial": baseline[0].number, "value": baseline[0].value,
                   "options": options_from_params(spec, baseline[0].params, per_exit)}
                  if baseline else None),
        trials=_counts(study))


def _enqueue_defaults(study, spec: RunSpec, tc: TuneConfig, log) -> None:
    """The method's own defaults as trial 0, where they lie inside tune.space."""
    params = default_params(spec, tc.space.per_exit)
    if all(tc.space.low <= v <= tc.space.high for v in params.values()):
        study.enqueue_trial(params, user_attrs={"baseline": True}, skip_if_exists=True)
    else:
        log(f"note: method {spec.method_name!r}'s defaults {params} lie outside tune.space "
            f"[{tc.space.low}, {tc.space.high}]; no baseline trial", file=sys.stderr)


def tune_one(spec: RunSpec, tc: TuneConfig, suite: store.Suite, storage_url: str,
             data: DataCache, log=print, optimize: bool = True,
             progress: bool = False) -> dict:
    """Run (or resume, or join) the study of one target run; returns a short summary.
    ``optimize=False`` only writes the best-trial file from the study as it is (a driver
    whose workers tuned elsewhere); ``progress``: a training bar per trial on stderr."""
    import optuna

    name = study_name(spec, tc)
    suite.tuning_dir.mkdir(parents=True, exist_ok=True)
    # Workers on one host take turns creating the tables and the study (SQLite would
    # otherwise race on CREATE TABLE); on a shared server, start one worker first.
    with locked(suite.tuning_dir / ".storage.lock"):
        study = optuna.create_study(study_name=name, storage=open_storage(storage_url),
                                    direction="maximize",
                                    sampler=_sampler(tc, tc.sampler.seed), pruner=_pruner(tc),
                                    load_if_exists=True)
    with locked(suite.tuning_dir / f".{name}.lock"):
        first = not study.get_trials(deepcopy=False)
        if first:
            for key, value in (("suite", spec.suite_slug), ("backbone", spec.backbone_label),
                               ("method", spec.method_label), ("objective", tc.objective)):
                study.set_user_attr(key, value)
            _enqueue_defaults(study, spec, tc, log)
    if not first:
        # A resumed or joining worker draws fresh points instead of replaying the first
        # worker's random stream (the same seed would propose the same values again).
        n = len(study.get_trials(deepcopy=False))
        study.sampler = _sampler(tc, mix_seed(tc.sampler.seed, n, os.getpid()) % (2 ** 32))
    fail_stale_trials(study)
    remaining = tc.trials - finished(study)
    if optimize and remaining > 0:
        workdir = suite.tuning_dir / "work"
        study.optimize(lambda trial: objective(trial, spec, tc, data, workdir, progress),
                       n_trials=remaining, timeout=tc.timeout, catch=(NonFiniteLoss,),
                       callbacks=[lambda study, trial: _enough(study, tc.trials)])
    best = write_best(study, spec, tc, suite, storage_url)
    counts = _counts(study)
    log(f"study {name}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + (f"; best trial {best['trial']}: value {best['value']:.3f}, {best['options']}"
           if best else "; no complete trial yet"))
    return {"study": name, "trials": counts, "best": best}
