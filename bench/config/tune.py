"""The ``tune:`` section (bench tune, docs/tuning.md) and the runs it tunes.

A study tunes one (backbone label, method label) with the suite seed ``tune.seed``. It
searches the options the method marks ``tuned`` (or, for methods without any, its whole
search space) over ``tune.space``, whose unset keys are the options' own declared ranges
(``methods.search_space``).
"""
import fnmatch
from typing import Annotated, Any, Optional, Sequence

from pydantic import AfterValidator, model_validator

import methods
from bench.config.types import (Choice, Config, Flag, Int, Key, Number, OneOf, Text, expect,
                                fail)


def _seed(value: int) -> int:
    """NumPy's (and so Optuna's samplers') seeds lie in [0, 2**32)."""
    if not 0 <= value < 2 ** 32:
        expect("a seed: an integer in [0, 2**32), at most 4294967295", value)
    return value


Seed = Annotated[Int, AfterValidator(_seed)]


class SpaceConfig(Config):
    """Where a study searches; a key left unset is the searched options' declared one."""
    per_exit: Optional[Flag] = Key(None, "one value per exit (where options take one)")
    low: Optional[Number] = Key(None, "the lowest value searched", ge=0)
    high: Optional[Number] = Key(None, "the highest value searched")
    log: Optional[Flag] = Key(None, "log-uniform, not uniform")


class SamplerConfig(Config):
    """``sampler: random`` means ``{name: random}``."""
    name: Choice("sampler", ("tpe", "random")) = Key("tpe", "Optuna's sampler")
    seed: Seed = Key(0, "the sampler's seed")

    @classmethod
    def given(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class PrunerConfig(Config):
    """``pruner: none`` means ``{name: none}``; a pruner's other keys are its arguments."""
    name: Choice("pruner", ("median", "percentile", "threshold", "none")) = Key(
        "median", "Optuna's pruner")

    @property
    def params(self) -> dict:
        return {k: v for k, v in self.as_dict().items() if k != "name"}


class MedianPruner(PrunerConfig):
    n_startup_trials: Int = Key(1, "trials never pruned", ge=0)
    n_warmup_steps: Int = Key(0, "epochs of a trial never pruned", ge=0)


class PercentilePruner(PrunerConfig):
    percentile: Number = Key(25.0, "pruned below this percentile of the trials", ge=0, le=100)
    n_startup_trials: Int = Key(1, "trials never pruned", ge=0)
    n_warmup_steps: Int = Key(0, "epochs of a trial never pruned", ge=0)


class ThresholdPruner(PrunerConfig):
    lower: Optional[Number] = Key(None, "pruned below this value")
    upper: Optional[Number] = Key(None, "pruned above this value")
    n_warmup_steps: Int = Key(0, "epochs of a trial never pruned", ge=0)

    @model_validator(mode="after")
    def _a_bound(self) -> "ThresholdPruner":
        if self.lower is None and self.upper is None:
            fail("a threshold pruner needs lower and/or upper")
        return self


PRUNERS = OneOf("pruner", {"median": MedianPruner, "percentile": PercentilePruner,
                           "threshold": ThresholdPruner, "none": PrunerConfig}, "median")


class TuneConfig(Config):
    runs: Optional[Text] = Key(None, "a pattern over `backbone/method` labels; null: methods "
                               "with `tuned` options, else all with a search space")
    seed: Optional[Int] = Key(None, "the suite seed the trials train with; null: the first")
    space: SpaceConfig = Key(SpaceConfig, "where to search")
    trials: Int = Key(20, "trials per study, over all workers and reruns", ge=1)
    timeout: Optional[Number] = Key(None, "seconds per worker and invocation", gt=0)
    epochs: Optional[Int] = Key(None, "epochs per trial; null: training.epochs", ge=1)
    objective: Choice("objective", ("budgeted", "anytime")) = Key(
        "budgeted", "held-out accuracy averaged over the budgets, or over the exits")
    sampler: SamplerConfig = Key(SamplerConfig, "how trials choose values")
    pruner: Annotated[PrunerConfig, PRUNERS] = Key(MedianPruner, "which trials stop early")


def tuned_options(method) -> tuple[str, ...]:
    """The options a study of this method (a MethodEntry) searches."""
    return method.tuned or tuple(methods.search_space(method.name))


def targets(runs: str | None, backbones: Sequence, entries: Sequence) -> list[tuple]:
    """(backbone, method) entries to tune: ``runs`` (fnmatch over ``backbone/method``
    labels), or else the methods with tuned options, or if there are none every method with
    a search space."""
    pairs = [(b, m) for b in backbones for m in entries]
    label = lambda b, m: f"{b.label}/{m.label}"  # noqa: E731
    if runs is not None:
        chosen = [(b, m) for b, m in pairs if fnmatch.fnmatchcase(label(b, m), runs)]
        bad = [f"{label(b, m)} (method {m.name!r})" for b, m in chosen if not tuned_options(m)]
        if bad:
            fail(f"{', '.join(bad)} ha{'s' if len(bad) == 1 else 've'} no option to tune "
                 "(its method declares no search space)", "tune.runs")
    else:
        chosen = [(b, m) for b, m in pairs if m.tuned] or \
            [(b, m) for b, m in pairs if tuned_options(m)]
    if not chosen:
        fail("matches no run with an option to tune; backbone/method labels: "
             + ", ".join(label(b, m) for b, m in pairs), "tune.runs")
    return chosen


def _space(given: SpaceConfig, chosen: list[tuple]) -> SpaceConfig:
    """``tune.space``: keys given, the rest from the searched options' declared ranges
    (which must then agree)."""
    ranges = {f"{m.name}.{o}": methods.search_space(m.name)[o]
              for _, m in chosen for o in tuned_options(m)}
    space = {}
    for key in SpaceConfig.model_fields:
        declared = {getattr(r, key) for r in ranges.values()}
        if getattr(given, key) is None and len(declared) > 1:
            fail(f"the options tuned here have different default {key}s ("
                 + ", ".join(f"{o}: {getattr(r, key)}" for o, r in ranges.items())
                 + f"); set tune.space.{key}, or tune them in separate suites",
                 f"tune.space.{key}")
        space[key] = declared.pop() if getattr(given, key) is None else getattr(given, key)
    sp = SpaceConfig(**space)
    if sp.log and sp.low <= 0:
        expect("a number > 0 (the search is log-uniform)", sp.low, "tune.space.low")
    if sp.high <= sp.low:
        expect(f"a number > tune.space.low = {sp.low}", sp.high, "tune.space.high")
    shared = [o for o, r in ranges.items() if r.per_exit_param is None]
    if sp.per_exit and shared:
        fail(f"{', '.join(shared)} takes one value for every exit, not one per exit",
             "tune.space.per_exit")
    return sp


def resolve(tune: TuneConfig, suite) -> TuneConfig:
    """The section checked against the rest of the suite (a SuiteConfig), its seed and its
    search space filled."""
    seed = suite.seeds[0] if tune.seed is None else tune.seed
    if seed not in suite.seeds:
        fail(f"seed {seed} is not one of the suite's seeds {list(suite.seeds)}", "tune.seed")
    space = _space(tune.space, targets(tune.runs, suite.backbones, suite.methods))
    budgeted = tune.objective == "budgeted"
    if budgeted and not (suite.budgets.mmacs or suite.budgets.fractions):
        fail("objective 'budgeted' averages accuracy over the suite's budgets, but the suite "
             "has none: set budgets.fractions or budgets.mmacs, or use objective: anytime",
             "tune.objective")
    if suite.dataset.heldout < (2 if budgeted else 1):
        fail("tuning needs held-out images (it never looks at test data)", "dataset.heldout")
    return tune.replace(seed=seed, space=space)
