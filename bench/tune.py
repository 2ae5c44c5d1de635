"""Tune BoostNet's ensemble temperature t_n with Optuna, on the held-out split only.

    python -m bench tune SUITE.yaml [--storage URL] [--only PATTERN]

The suite's ``tune:`` section (schema in :data:`DEFAULTS`, documented in docs/tuning.md)
names the runs to tune, the search space, the trial budget, the sampler and the pruner.
One Optuna study per (backbone label, method label); its name is deterministic
(``<suite>--<backbone>--<method>--<hash8>``, the hash over everything a trial's value
depends on), so rerunning resumes it and several workers may share it.

Every trial trains the run's backbone and method with the suite's training recipe
(``tune.epochs`` may shorten it) with t_n set by the sampler, reports the mean held-out
top-1 over the exits after every epoch (``trial.report``; the pruner may stop it) and
returns the objective, computed from held-out logits only:

- ``budgeted`` (default): the held-out split is cut in two halves by a seeded permutation;
  thresholds are fitted on one half and accuracy is measured on the other at each of the
  suite's budgets, then the halves swap (2-fold cross-fitting); the value is the mean
  accuracy over budgets and folds;
- ``anytime``: the mean held-out top-1 over the exits.

The test split is never loaded into a trial. The best trial is written to
``results/<suite>/tuning/<study>.json``; a method with ``temperature: tuned`` reads it
(:func:`tuned_temperature`). This is the *ensemble temperature* t_n of F_n = t_n F_{n-1} + f_n,
part of the trained model; the post-hoc *calibration temperature* (bench.calibration) is
another thing.
"""
from __future__ import annotations

import copy
import fnmatch
import os
import socket
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench import store
from bench.store import now, read_json
from bench.suite import SuiteError, TUNED, _Checker, run_hash

PAPER_TEMPERATURE = 0.5  # the paper's default t_n, enqueued as every study's first trial

SAMPLERS = ("tpe", "random")
PRUNERS = {
    "median": {"n_startup_trials": 1, "n_warmup_steps": 0},
    "percentile": {"percentile": 25.0, "n_startup_trials": 1, "n_warmup_steps": 0},
    "threshold": {"lower": None, "upper": None, "n_warmup_steps": 0},
    "none": {},
}
DEFAULTS = {
    "runs": None,  # fnmatch over "backbone/method" labels (None: see select_targets)
    "seed": None,  # the suite seed whose data order and init the trials use (None: first)
    "space": None,  # SPACE
    "trials": 20,  # total over all workers and reruns
    "timeout": None,  # seconds, per worker and invocation
    "epochs": None,  # shorten each trial's training (None: training.epochs)
    "objective": "budgeted",
    "sampler": None,  # {name: tpe | random, seed: 0}
    "pruner": None,  # {name: median | percentile | threshold | none, ...}
}
SPACE = {"per_exit": False, "low": 0.05, "high": 2.0, "log": True}
OBJECTIVES = ("budgeted", "anytime")
# Keys that do not change what a trial's value means: left out of the study hash, so a
# study can be extended (more trials, another sampler or pruner) and still resume.
NOT_IN_STUDY_HASH = ("runs", "trials", "timeout", "sampler", "pruner")
# Heartbeats let a worker mark the trial of a dead worker failed and retry its parameters.
HEARTBEAT_S, GRACE_S = 60, 180


# ---------------------------------------------------------------------------------------
# Schema


def validate(tune: Any, file: str, suite: dict) -> dict:
    """Check a ``tune:`` section (plain data) against the already checked parts of the suite;
    returns it with every default filled. Errors are SuiteErrors naming file and key path."""
    c = _Checker(file)
    t = c.mapping(tune, "tune", DEFAULTS)
    if t["runs"] is not None:
        c.string(t["runs"], "tune.runs")
    t["seed"] = suite["seeds"][0] if t["seed"] is None else t["seed"]
    if c.integer(t["seed"], "tune.seed") not in suite["seeds"]:
        c.fail("tune.seed", f"seed {t['seed']} is not one of the suite's seeds {suite['seeds']}")
    sp = c.mapping(t["space"], "tune.space", SPACE)
    c.boolean(sp["per_exit"], "tune.space.per_exit")
    c.boolean(sp["log"], "tune.space.log")
    sp["low"] = float(c.number(sp["low"], "tune.space.low", lo=0, open_lo=sp["log"]))
    sp["high"] = float(c.number(sp["high"], "tune.space.high"))
    if sp["high"] <= sp["low"]:
        c.fail("tune.space.high", f"expected a number > tune.space.low = {sp['low']}, "
                                  f"found {sp['high']}")
    t["space"] = sp
    c.integer(t["trials"], "tune.trials", lo=1)
    if t["timeout"] is not None:
        t["timeout"] = float(c.number(t["timeout"], "tune.timeout", lo=0, open_lo=True))
    c.integer(t["epochs"], "tune.epochs", lo=1, null=True)
    c.choice(t["objective"], "tune.objective", OBJECTIVES, "objective")
    if t["objective"] == "budgeted" and not (suite["budgets"]["mmacs"]
                                             or suite["budgets"]["fractions"]):
        c.fail("tune.objective", "objective 'budgeted' averages accuracy over the suite's "
                                 "budgets, but the suite has none: set budgets.fractions or "
                                 "budgets.mmacs, or use objective: anytime")
    if suite["dataset"]["heldout"] < (2 if t["objective"] == "budgeted" else 1):
        c.fail("dataset.heldout", "tuning needs held-out images (it never looks at test data)")
    sampler = t["sampler"] if isinstance(t["sampler"], dict) else \
        {"name": t["sampler"]} if isinstance(t["sampler"], str) else t["sampler"]
    s = c.mapping(sampler, "tune.sampler", {"name": "tpe", "seed": 0})
    c.choice(s["name"], "tune.sampler.name", SAMPLERS, "sampler")
    c.integer(s["seed"], "tune.sampler.seed", lo=0)
    t["sampler"] = s
    pruner = t["pruner"] if isinstance(t["pruner"], dict) else \
        {"name": t["pruner"]} if isinstance(t["pruner"], str) else t["pruner"]
    name = (pruner or {}).get("name", "median") if isinstance(pruner, dict) else "median"
    c.choice(name, "tune.pruner.name", list(PRUNERS), "pruner")
    p = c.mapping(pruner, "tune.pruner", {"name": name, **PRUNERS[name]})
    for key in ("n_startup_trials", "n_warmup_steps"):
        if key in p:
            c.integer(p[key], f"tune.pruner.{key}", lo=0)
    if "percentile" in p:
        p["percentile"] = float(c.number(p["percentile"], "tune.pruner.percentile", lo=0, hi=100))
    if name == "threshold":
        if p["lower"] is None and p["upper"] is None:
            c.fail("tune.pruner", "a threshold pruner needs lower and/or upper")
        for key in ("lower", "upper"):
            if p[key] is not None:
                p[key] = float(c.number(p[key], f"tune.pruner.{key}"))
    t["pruner"] = p
    return t


# ---------------------------------------------------------------------------------------
# Targets, study names, temperatures


def has_temperature(spec) -> bool:
    return "temperature" in spec.method_options


def select_targets(suite, pattern: str | None = None) -> list:
    """One run spec per (backbone, method) to tune, with seed ``tune.seed``.

    ``tune.runs`` (fnmatch over ``backbone/method`` labels) picks them; without it, the
    methods with ``temperature: tuned``, or if there are none every method with a
    temperature. ``pattern`` (``--only``) narrows further (run id or backbone/method/seed)."""
    tc = suite.config["tune"]
    c = _Checker(suite.path)
    specs = [s for s in suite.runs if s.seed == tc["seed"]]
    if tc["runs"] is not None:
        chosen = [s for s in specs if fnmatch.fnmatchcase(
            f"{s.backbone_label}/{s.method_label}", tc["runs"])]
        bad = [f"{s.backbone_label}/{s.method_label}" for s in chosen if not has_temperature(s)]
        if bad:
            c.fail("tune.runs", f"{', '.join(bad)} ha{'s' if len(bad) == 1 else 've'} no "
                                "temperature to tune (only methods with a temperature option)")
    else:
        chosen = [s for s in specs if s.method_options.get("temperature") == TUNED] or \
            [s for s in specs if has_temperature(s)]
    if not chosen:
        c.fail("tune.runs", "matches no run with a temperature; backbone/method labels: "
               + ", ".join(sorted({f"{s.backbone_label}/{s.method_label}" for s in specs})))
    if pattern:
        chosen = [s for s in chosen if fnmatch.fnmatchcase(s.run_id, pattern)
                  or fnmatch.fnmatchcase(s.labels, pattern)
                  or fnmatch.fnmatchcase(f"{s.backbone_label}/{s.method_label}", pattern)]
    return chosen


def study_name(spec, tune: dict) -> str:
    """``<suite>--<backbone>--<method>--<hash8>``; the hash covers the run's config without
    its temperature and seed, plus the tune settings that change a trial's value."""
    config = copy.deepcopy(spec.config)
    config["method"]["options"].pop("temperature", None)
    for key in ("seed", "tune", "evaluation"):
        config.pop(key, None)
    config["tuning"] = {k: v for k, v in tune.items() if k not in NOT_IN_STUDY_HASH}
    return f"{spec.suite_slug}--{spec.backbone_label}--{spec.method_label}--{run_hash(config)}"


def param_names(num_exits: int, per_exit: bool) -> list[str]:
    """Optuna parameter names: one shared ``temperature``, or ``t_2``..``t_N`` (t_1
    multiplies F_0 = 0 and never matters)."""
    return [f"t_{n}" for n in range(2, num_exits + 1)] if per_exit else ["temperature"]


def temperature_from_params(params: dict, num_exits: int, per_exit: bool):
    """The BoostNet ``temperature`` option: a float, or the list t_2..t_N."""
    if not per_exit:
        return float(params["temperature"])
    return [float(params[k]) for k in param_names(num_exits, True)]


def tuning_dir(suite_dir: Path) -> Path:
    return store.Suite(suite_dir).tuning_dir


def best_file(suite_dir: Path, study: str) -> Path:
    return store.Suite(suite_dir).best_file(study)


class TunedTemperatureMissing(SuiteError):
    """A run asks for ``temperature: tuned`` but its study has no best trial yet."""


def tuned_temperature(spec, suite_dir: Path, suite_file: str = "<suite>"):
    """(temperature option, source dict) for a run with ``temperature: tuned``: the best
    trial of its study, read from ``results/<suite>/tuning/<study>.json``."""
    tc = spec.config["tune"]
    name = study_name(spec, tc)
    f = best_file(suite_dir, name)
    if not f.exists():
        raise TunedTemperatureMissing(
            suite_file, f"methods[{spec.method_label}].options.temperature",
            f"run {spec.run_id} uses temperature: tuned, but study {name!r} has no best trial "
            f"({f} is missing); run `python -m bench tune {suite_file}` first")
    info = read_json(f)
    source = {k: info[k] for k in ("study", "storage", "trial", "value", "params", "objective")}
    source["file"] = str(f)
    return info["temperature"], source


# ---------------------------------------------------------------------------------------
# Objective


def heldout_objective(logits: torch.Tensor, targets: torch.Tensor, exit_mmacs, budgets,
                      objective: str, seed: int) -> dict:
    """The trial's value from held-out logits [N, M, C] only (see the module docstring)."""
    from bench import evaluate
    from bench.data.splits import mix_seed

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


def _suggest(trial, space: dict, num_exits: int):
    params = {name: trial.suggest_float(name, space["low"], space["high"], log=space["log"])
              for name in param_names(num_exits, space["per_exit"])}
    return temperature_from_params(params, num_exits, space["per_exit"])


def _objective(trial, spec, tc: dict, data, workdir: Path):
    import optuna

    import methods as methods_registry
    from bench import backbones
    from bench.runner import pick_device, seed_everything
    from bench.train import Dist, Trainer, predict

    num_exits = len(spec.exit_mmacs)
    temperature = _suggest(trial, tc["space"], num_exits)
    training = {**spec.config["training"], "epochs": tc["epochs"] or spec.config["training"]["epochs"]}
    device = pick_device(training["device"])
    seed_everything(spec.seed)
    splits = data.get(spec.config["dataset"], spec.seed)
    model = backbones.create(spec.backbone_name, num_classes=spec.num_classes, **spec.overrides)
    model.to(device)
    method = methods_registry.create(spec.method_name,
                                     **{**spec.method_options, "temperature": temperature})
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")

    def on_epoch(info: dict) -> None:
        # Intermediate value: mean held-out top-1 over the exits after this epoch.
        value = statistics.fmean(r["heldout_top1"] for r in info["rows"])
        trial.report(value, info["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"held-out mean top-1 {value:.2f} at epoch {info['epoch']}")

    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=f"trial{trial.number}-") as tmp:
        trainer = Trainer(model, method, splits, training, spec.seed, device,
                          Path(tmp) / "checkpoint.pt", Dist(), on_epoch=on_epoch)
        trainer.fit()
    logits, targets = predict(model, method, splits.batches(
        "heldout", training["eval_batch_size"], device=device), channels_last=trainer.channels_last)
    result = heldout_objective(logits, targets, spec.exit_mmacs, spec.budgets_mmacs,
                               tc["objective"], tc["sampler"]["seed"])
    for key in ("anytime", "anytime_mean", "budgeted"):
        if key in result:
            trial.set_user_attr(f"heldout_{key}", result[key])
    return result["value"]


# ---------------------------------------------------------------------------------------
# Studies


def default_storage(suite_dir: Path) -> str:
    return store.Suite(suite_dir).default_storage()


def open_storage(url: str):
    """Plain Optuna RDB storage (readable by optuna-dashboard), with heartbeats so that the
    trial of a worker that died is marked failed and its parameters retried once."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    kwargs = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # writers take turns
    with warnings.catch_warnings():  # heartbeats are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                              max_retry=1), **kwargs)


def redact(url: str) -> str:
    """The storage URL without its password (it is written to the results folder)."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _sampler(cfg: dict, seed: int):
    import optuna
    if cfg["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(cfg: dict):
    import optuna
    p = {k: v for k, v in cfg.items() if k != "name"}
    return {"median": optuna.pruners.MedianPruner, "percentile": optuna.pruners.PercentilePruner,
            "threshold": optuna.pruners.ThresholdPruner,
            "none": optuna.pruners.NopPruner}[cfg["name"]](**p)


def _counts(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def write_best(study, spec, tc: dict, suite_dir: Path, storage_url: str) -> Path | None:
    """results/<suite>/tuning/<study>.json from the study's best complete trial."""
    import optuna
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    best = max(complete, key=lambda t: t.value)
    baseline = [t for t in complete if t.user_attrs.get("baseline")]
    num_exits = len(spec.exit_mmacs)
    info = {
        "study": study.study_name, "storage": redact(storage_url), "suite": spec.suite_slug,
        "backbone": spec.backbone_label, "method": spec.method_label, "seed": spec.seed,
        "objective": tc["objective"], "direction": "maximize", "trial": best.number,
        "value": best.value, "params": best.params,
        "temperature": temperature_from_params(best.params, num_exits, tc["space"]["per_exit"]),
        "heldout_anytime": best.user_attrs.get("heldout_anytime"),
        "baseline": ({"trial": baseline[0].number, "value": baseline[0].value,
                      "temperature": PAPER_TEMPERATURE} if baseline else None),
        "trials": _counts(study), "updated": now(),
    }
    return store.Suite(suite_dir).write_best(study.study_name, info)


def tune_one(spec, tc: dict, suite_dir: Path, storage_url: str, data, log=print) -> dict:
    """Run (or resume, or join) the study of one target run; returns a short summary."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from bench.claims import locked
    from bench.data.splits import mix_seed
    from bench.train import NonFiniteLoss

    name = study_name(spec, tc)
    # Workers on one host take turns creating the tables and the study (SQLite would
    # otherwise race on CREATE TABLE); on a shared server, start one worker first.
    with locked(tuning_dir(suite_dir) / ".storage.lock"):
        storage = open_storage(storage_url)
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    sampler=_sampler(tc["sampler"], tc["sampler"]["seed"]),
                                    pruner=_pruner(tc["pruner"]), load_if_exists=True)
    num_exits = len(spec.exit_mmacs)
    space = tc["space"]
    with locked(tuning_dir(suite_dir) / f".{name}.lock"):
        first = not study.get_trials(deepcopy=False)
        if first:
            for key, value in (("suite", spec.suite_slug), ("backbone", spec.backbone_label),
                               ("method", spec.method_label), ("objective", tc["objective"])):
                study.set_user_attr(key, value)
            if space["low"] <= PAPER_TEMPERATURE <= space["high"]:
                study.enqueue_trial({k: PAPER_TEMPERATURE for k in param_names(
                    num_exits, space["per_exit"])}, user_attrs={"baseline": True},
                    skip_if_exists=True)
            else:
                log(f"note: the paper's t = {PAPER_TEMPERATURE} is outside tune.space "
                    f"[{space['low']}, {space['high']}]; no baseline trial", file=sys.stderr)
    if not first:
        # A resumed or joining worker draws fresh points instead of replaying the first
        # worker's random stream (the same seed would propose the same temperatures again).
        n = len(study.get_trials(deepcopy=False))
        study.sampler = _sampler(tc["sampler"], mix_seed(tc["sampler"]["seed"], n, os.getpid())
                                 % (2 ** 32))
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    done = len(study.get_trials(deepcopy=False, states=counted))
    remaining = tc["trials"] - done
    if remaining > 0:
        study.optimize(lambda trial: _objective(trial, spec, tc, data, tuning_dir(suite_dir) / "work"),
                       n_trials=remaining, timeout=tc["timeout"], catch=(NonFiniteLoss,),
                       callbacks=[MaxTrialsCallback(tc["trials"], states=counted)])
    path = write_best(study, spec, tc, suite_dir, storage_url)
    counts = _counts(study)
    summary = {"study": name, "trials": counts, "best": None if path is None else read_json(path)}
    best = summary["best"]
    log(f"study {name}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + (f"; best trial {best['trial']}: value {best['value']:.3f}, temperature "
           f"{best['temperature']}" if best else "; no complete trial yet"))
    return summary


def main(args) -> int:
    """``python -m bench tune``: every target of the suite's tune section in turn."""
    from bench.runner import DataCache
    from bench.suite import load_suite
    import methods as methods_registry

    suite = load_suite(args.suite, args.overrides)
    tc = suite.config["tune"]
    if tc is None:
        raise SuiteError(suite.path, "tune", "the suite has no tune: section (see docs/tuning.md)")
    targets = select_targets(suite, getattr(args, "only", None))
    if not targets:
        from bench.cli import UsageError
        raise UsageError(f"--only {args.only!r} matches none of the runs tune: selects")
    epochs = tc["epochs"] or suite.config["training"]["epochs"]
    for spec in targets:
        stages = methods_registry.create(spec.method_name, **{
            **spec.method_options, "temperature": PAPER_TEMPERATURE}).stages(len(spec.exit_mmacs))
        if epochs < len(stages):
            raise SuiteError(suite.path, "tune.epochs", f"method {spec.method_label!r} trains "
                             f"in {len(stages)} stages and needs at least {len(stages)} epochs, "
                             f"found {epochs}")
    suite_dir = Path(args.results) / suite.slug
    tuning_dir(suite_dir).mkdir(parents=True, exist_ok=True)
    folder = store.Suite(suite_dir)
    if not (suite_dir / "suite.json").exists():
        folder.write_suite(suite.config, [r.run_id for r in suite.runs])
    storage_url = getattr(args, "storage", None) or default_storage(suite_dir)
    data = DataCache()
    data.get(suite.config["dataset"], tc["seed"])  # missing data fails before any study
    for spec in targets:
        tune_one(spec, tc, suite_dir, storage_url, data,
                 log=lambda *a, **k: print(*a, **{"file": sys.stdout, **k}))
    return 0


# ---------------------------------------------------------------------------------------
# Report figures


def report_figures(suite_dir: Path, storage: str | None = None) -> list[tuple[str, Any]]:
    """Optuna's own plotly figures for every study of a suite with a best-trial file:
    optimization history, intermediate values, parameter importances (studies with more
    than one parameter), slices. ``storage`` overrides the URL the files name (whose
    password is redacted). A study that cannot be read is skipped with a note on stderr."""
    import optuna
    from optuna import visualization as vis

    figures = []
    for f in sorted(tuning_dir(suite_dir).glob("*.json")):
        info = read_json(f)
        url = storage or info["storage"]
        local = tuning_dir(suite_dir) / "optuna.db"
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists() \
                and local.exists():
            url = f"sqlite:///{local.resolve()}"  # the results folder was moved
        try:
            study = optuna.load_study(study_name=info["study"], storage=url)
        except Exception as err:  # unreachable database, redacted password, ...
            print(f"tuning figures: study {info['study']} not read: {err}", file=sys.stderr)
            continue
        who = f"{info['backbone']}/{info['method']}"
        plots = [("optimization history", vis.plot_optimization_history),
                 ("intermediate values (held-out mean top-1 per epoch)",
                  vis.plot_intermediate_values), ("slices", vis.plot_slice)]
        if len(info["params"]) > 1:
            plots.insert(1, ("parameter importances", vis.plot_param_importances))
        for title, plot in plots:
            try:
                fig = plot(study)
            except Exception as err:  # e.g. too few complete trials
                print(f"tuning figures: {who} {title}: {err}", file=sys.stderr)
                continue
            fig.update_layout(title=f"{who}: {title} (study {info['study']})")
            figures.append((f"{who}: {title}", fig))
    return figures
