"""The ``tune:`` section (bench tune, docs/tuning.md): its schema, the runs it tunes and the
deterministic name of each study.

A study tunes one (backbone label, method label) with the suite seed ``tune.seed``. It
searches the options the method marks ``tuned`` (or, for methods without any, its whole
search space) over ``tune.space``, whose unset keys are the options' own declared ranges
(``methods.search_space``).
"""
from __future__ import annotations

import fnmatch
from typing import Any, Sequence

import methods
from bench.config import defaults as D
from bench.config.checker import Checker
from bench.config.runs import RunSpec, run_hash
from bench.config.schema import (BackboneEntry, BudgetsConfig, DatasetConfig, MethodEntry,
                                 PrunerConfig, SamplerConfig, SpaceConfig, TuneConfig, freeze)


def tuned_options(method: MethodEntry) -> tuple[str, ...]:
    """The options a study of this method searches."""
    return method.tuned or tuple(methods.search_space(method.name))


def targets(c: Checker, runs: str | None, backbones: Sequence[BackboneEntry],
            entries: Sequence[MethodEntry]) -> list[tuple[BackboneEntry, MethodEntry]]:
    """(backbone, method) pairs to tune: ``runs`` (fnmatch over ``backbone/method`` labels),
    or else the methods with tuned options, or if there are none every method with a
    search space. Errors name ``tune.runs``."""
    pairs = [(b, m) for b in backbones for m in entries]
    label = lambda b, m: f"{b.label}/{m.label}"  # noqa: E731
    if runs is not None:
        chosen = [(b, m) for b, m in pairs if fnmatch.fnmatchcase(label(b, m), runs)]
        bad = [f"{label(b, m)} (method {m.name!r})" for b, m in chosen if not tuned_options(m)]
        if bad:
            c.fail("tune.runs", f"{', '.join(bad)} ha{'s' if len(bad) == 1 else 've'} no "
                                "option to tune (its method declares no search space)")
    else:
        chosen = [(b, m) for b, m in pairs if m.tuned] or \
            [(b, m) for b, m in pairs if tuned_options(m)]
    if not chosen:
        c.fail("tune.runs", "matches no run with an option to tune; backbone/method labels: "
               + ", ".join(label(b, m) for b, m in pairs))
    return chosen


def _space(c: Checker, value: Any, chosen) -> SpaceConfig:
    """``tune.space``: given keys, the rest from the searched options' declared ranges
    (which must then agree)."""
    sp = c.mapping(value, "tune.space", {k: None for k in D.SPACE_KEYS})
    ranges = {f"{m.name}.{o}": methods.search_space(m.name)[o]
              for _, m in chosen for o in tuned_options(m)}
    for key in D.SPACE_KEYS:
        if sp[key] is None:
            declared = {getattr(r, key) for r in ranges.values()}
            if len(declared) > 1:
                c.fail(f"tune.space.{key}", "the options tuned here have different default "
                       f"{key}s (" + ", ".join(f"{o}: {getattr(r, key)}"
                                               for o, r in ranges.items())
                       + f"); set tune.space.{key}, or tune them in separate suites")
            sp[key] = declared.pop()
    c.boolean(sp["per_exit"], "tune.space.per_exit")
    c.boolean(sp["log"], "tune.space.log")
    low = c.number(sp["low"], "tune.space.low", lo=0, open_lo=sp["log"])
    high = c.number(sp["high"], "tune.space.high")
    if high <= low:
        c.fail("tune.space.high", f"expected a number > tune.space.low = {low}, found {high}")
    if sp["per_exit"]:
        shared = [o for o, r in ranges.items() if r.per_exit_param is None]
        if shared:
            c.fail("tune.space.per_exit", f"{', '.join(shared)} takes one value for every "
                                          "exit, not one per exit")
    return SpaceConfig(sp["per_exit"], low, high, sp["log"])


def _named(value: Any, default: str) -> Any:
    """``sampler: random`` means ``sampler: {name: random}``."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and "name" not in value:
        return {"name": default, **value}
    return value


def validate(c: Checker, value: Any, *, dataset: DatasetConfig, seeds: Sequence[int],
             budgets: BudgetsConfig, backbones: Sequence[BackboneEntry],
             entries: Sequence[MethodEntry]) -> TuneConfig:
    """Check a ``tune:`` section against the already checked parts of the suite."""
    t = c.mapping(c.plain(value, "tune") if isinstance(value, dict) else value, "tune", D.TUNE)
    if t["runs"] is not None:
        c.string(t["runs"], "tune.runs")
    seed = seeds[0] if t["seed"] is None else t["seed"]
    if c.integer(seed, "tune.seed") not in seeds:
        c.fail("tune.seed", f"seed {seed} is not one of the suite's seeds {list(seeds)}")
    chosen = targets(c, t["runs"], backbones, entries)
    space = _space(c, t["space"], chosen)
    c.integer(t["trials"], "tune.trials", lo=1)
    timeout = None if t["timeout"] is None else \
        c.number(t["timeout"], "tune.timeout", lo=0, open_lo=True)
    c.integer(t["epochs"], "tune.epochs", lo=1, null=True)
    c.choice(t["objective"], "tune.objective", D.OBJECTIVES, "objective")
    if t["objective"] == "budgeted" and not (budgets.mmacs or budgets.fractions):
        c.fail("tune.objective", "objective 'budgeted' averages accuracy over the suite's "
                                 "budgets, but the suite has none: set budgets.fractions or "
                                 "budgets.mmacs, or use objective: anytime")
    if dataset.heldout < (2 if t["objective"] == "budgeted" else 1):
        c.fail("dataset.heldout", "tuning needs held-out images (it never looks at test data)")
    return TuneConfig(t["runs"], seed, space, t["trials"], timeout, t["epochs"],
                      t["objective"], _sampler(c, t["sampler"]), _pruner(c, t["pruner"]))


def _sampler(c: Checker, value: Any) -> SamplerConfig:
    s = c.mapping(_named(value, D.SAMPLER["name"]), "tune.sampler", D.SAMPLER)
    c.choice(s["name"], "tune.sampler.name", D.SAMPLERS, "sampler")
    return SamplerConfig(s["name"], c.seed(s["seed"], "tune.sampler.seed"))


def _pruner(c: Checker, value: Any) -> PrunerConfig:
    pruner = _named(value, D.PRUNER)
    name = pruner.get("name") if isinstance(pruner, dict) else D.PRUNER
    c.choice(name, "tune.pruner.name", list(D.PRUNERS), "pruner")
    p = c.mapping(pruner, "tune.pruner", {"name": name, **D.PRUNERS[name]})
    for key in ("n_startup_trials", "n_warmup_steps"):
        if key in p:
            c.integer(p[key], f"tune.pruner.{key}", lo=0)
    if "percentile" in p:
        p["percentile"] = c.number(p["percentile"], "tune.pruner.percentile", lo=0, hi=100)
    if name == "threshold":
        if p["lower"] is None and p["upper"] is None:
            c.fail("tune.pruner", "a threshold pruner needs lower and/or upper")
        for key in ("lower", "upper"):
            if p[key] is not None:
                p[key] = c.number(p[key], f"tune.pruner.{key}")
    return PrunerConfig(name, freeze({k: v for k, v in p.items() if k != "name"}))


def select_targets(suite, pattern: str | None = None) -> list[RunSpec]:
    """One run spec per (backbone, method) to tune, with seed ``tune.seed``; ``pattern``
    (``--only``) narrows them (run id, ``backbone/method/seed`` or ``backbone/method``)."""
    tc = suite.config.tune
    pairs = targets(Checker(suite.path), tc.runs, suite.config.backbones, suite.config.methods)
    wanted = {(b.label, m.label) for b, m in pairs}
    chosen = [s for s in suite.runs
              if s.seed == tc.seed and (s.backbone_label, s.method_label) in wanted]
    if pattern:
        chosen = [s for s in chosen if fnmatch.fnmatchcase(s.run_id, pattern)
                  or fnmatch.fnmatchcase(s.labels, pattern)
                  or fnmatch.fnmatchcase(f"{s.backbone_label}/{s.method_label}", pattern)]
    return chosen


def study_name(spec: RunSpec, tune: TuneConfig) -> str:
    """``<suite>--<backbone>--<method>--<hash8>``; the hash covers the run's config without
    its tuned options and seed, plus the tune settings that change a trial's value."""
    config = spec.config
    for option in tuned_options(spec.method):
        config["method"]["options"].pop(option, None)
    for key in ("seed", "tune", "evaluation"):
        config.pop(key, None)
    config["tuning"] = {k: v for k, v in tune.as_dict().items() if k not in D.NOT_IN_STUDY_HASH}
    return f"{spec.suite_slug}--{spec.backbone_label}--{spec.method_label}--{run_hash(config)}"

