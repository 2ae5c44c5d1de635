"""Suites: load a suite file, apply overrides, validate it into a typed SuiteConfig and
expand it into runs.

    suite = load_suite("suites/cifar100.yaml", overrides=["training.epochs=3"])
    for run in select(suite.runs, "*boostnet*"):
        run.run_id, run.config            # everything the run depends on

Validation fills every default (``suite.config.as_dict()`` is the complete resolved suite)
and reports problems as SuiteError naming the file, the key path (``methods[2].options
.temperature``), what was expected and what was found. Expanding builds every backbone once
(its per-exit fvcore cost is cached) and tries every method and exit rule on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import TypeAdapter, ValidationError

from bench.config import costs, dry_run, plugins
from bench.config.checker import Checker
from bench.config.loading import check_mapping, read_raw, slugify
from bench.config.overrides import with_overrides
from bench.config.runs import RunSpec, make_run
from bench.config.schema import MethodEntry, Methods, SuiteConfig
from bench.config.tune import targets
from bench.config.types import suite_error


@dataclass(frozen=True)
class Suite:
    name: str  # display name, any text
    slug: str  # folder-safe: results/<slug>/
    path: str  # the suite file, as given (error messages name it)
    config: SuiteConfig
    runs: tuple[RunSpec, ...]
    overrides: tuple[str, ...] = ()

    def resolved(self) -> dict:
        """The resolved suite as plain data (suite.json), without ``executor``: suite.json
        says what the results are, not where they were computed."""
        out = self.config.as_dict()
        out.pop("executor", None)
        return out


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> Suite:
    """Read, override (``key.path=yaml-value``), validate and expand a suite file."""
    return build_suite(read_raw(path), str(path), overrides)


def build_suite(raw: Any, file: str = "<suite>", overrides: Sequence[str] = ()) -> Suite:
    """Validate and expand an already parsed suite (a dict as YAML gives it); relative
    plugin paths resolve against the suite file's folder."""
    check_mapping(raw, file)
    base = Path(file).resolve().parent
    config, runs = with_overrides(file, raw, overrides, lambda r: resolve(r, file, base))
    return Suite(config.name, slugify(config.name), file, config, tuple(runs),
                 tuple(overrides))


def resolve(raw: dict, file: str, base: Path) -> tuple[SuiteConfig, list[RunSpec]]:
    c = Checker(file)
    plugin_list = plugins.resolve(c, raw.get("plugins"), base)
    plugins.load(c, plugin_list)  # before anything asks the registries
    try:
        config = SuiteConfig.model_validate({**raw, "plugins": plugin_list})
    except ValidationError as err:
        raise suite_error(file, err) from None
    return config, expand(c, config)


def resolve_methods(c: Checker, value: Any) -> list[MethodEntry]:
    """A ``methods:`` list alone, checked and filled (test fixtures)."""
    try:
        return list(TypeAdapter(Methods).validate_python(value))
    except ValidationError as err:
        raise suite_error(c.file, err, "methods") from None


def expand(c: Checker, config: SuiteConfig) -> list[RunSpec]:
    """The runs, backbone x method x seed, once each backbone is built and costed and each
    method and exit rule tried on it."""
    num_classes, input_size = config.dataset.shape()
    tune, epochs = config.tune, config.training.epochs
    tuned = {(b.label, m.label) for b, m in targets(tune.runs, config.backbones,
                                                    config.methods)} if tune else set()
    runs = []
    for i, b in enumerate(config.backbones):
        info = costs.check_backbone(c, b, f"backbones[{i}]", num_classes, input_size,
                                    config.dataset.name)
        budgets = costs.budgets_for(c, config.budgets, info, b.label)
        dry_run.rules(c, config.evaluation, info.num_exits, num_classes, b.label)
        for j, m in enumerate(config.methods):
            path = f"methods[{j}]"
            split = config.training_for(m).backbone_epochs or 0  # phase 1 (methods.regimes)
            stages = dry_run.method(c, m, path, info, b, num_classes, epochs - split)
            dry_run.cuda_graphs(c, config.training, m, path, stages)
            exit_mmacs = costs.method_mmacs(c, info, b, num_classes, m,
                                            dry_run.create(c, m, path), path)
            costs.check_budgets_for_method(c, config.budgets, budgets, exit_mmacs, b, m)
            if (b.label, m.label) in tuned and (tune.epochs or epochs) < len(stages) + split:
                after = f" after {split} epochs of phase 1" if split else ""
                c.fail("tune.epochs", f"method {m.label!r} trains in {len(stages)} stages"
                                      f"{after} and needs at least {len(stages) + split} "
                                      f"epochs, found {tune.epochs}")
            runs += [make_run(config, slugify(config.name), b, m, seed, num_classes,
                              input_size, exit_mmacs, budgets) for seed in config.seeds]
    return runs
