"""Suites: load a suite file, apply overrides, validate it into a typed SuiteConfig and
expand it into runs.

    suite = load_suite("suites/cifar100.yaml", overrides=["training.epochs=3"])
    for run in select(suite.runs, "*boostnet*"):
        run.run_id, run.config            # everything the run depends on

Validation fills every default (``suite.config.as_dict()`` is the complete resolved suite)
and reports problems as SuiteError naming the file, the key path (``methods[2].options
.temperature``), what was expected and what was found. Methods and backbones are checked by
asking their registries and building them: every backbone once (its per-exit fvcore cost
is cached), every method once per backbone on dummy logits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench import backbones
from bench.config import (costs, evaluation as evaluation_schema, executor as executor_schema,
                          method_entries, plugins, sections, tune as tune_schema)
from bench.config.checker import Checker
from bench.config.defaults import BACKBONE_ENTRY, TOP_LEVEL
from bench.config.loading import check_mapping, read_raw, slugify
from bench.config.overrides import with_overrides
from bench.config.runs import RunSpec, make_run
from bench.config.schema import SuiteConfig


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
    s = c.mapping(raw, "", TOP_LEVEL)
    plugin_list = plugins.resolve(c, s["plugins"], base)
    plugins.load(c, plugin_list)  # before anything asks the registries
    name = sections.name(c, s["name"])
    description = sections.description(c, s["description"])
    dataset = sections.dataset(c, s["dataset"])
    training = sections.training(c, s["training"])
    seeds = sections.seeds(c, s["seeds"])
    budgets = sections.budgets(c, s["budgets"])
    evaluation = evaluation_schema.validate(c, s["evaluation"])
    num_classes, input_size = sections.shape(dataset)

    raw_backbones = sections.entries(c, s["backbones"], "backbones", backbones.names(),
                                     "backbone", BACKBONE_ENTRY)
    entries_b = [sections.backbone_entry(c, e, f"backbones[{i}]", num_classes, dataset.name)
                 for i, e in enumerate(raw_backbones)]
    entries_m = method_entries.resolve_methods(c, s["methods"])
    baseline = sections.baseline(c, s["baseline"], [m.label for m in entries_m])
    tune = None
    if s["tune"] is not None:
        tune = tune_schema.validate(c, s["tune"], dataset=dataset, seeds=seeds,
                                    budgets=budgets, backbones=entries_b, entries=entries_m)
    for i, m in enumerate(entries_m):
        if m.tuned and tune is None:
            c.fail(f"methods[{i}].options.{m.tuned[0]}",
                   f"{m.tuned[0]}: tuned needs a tune: section in the suite (docs/tuning.md)")

    executor = executor_schema.validate(c, s["executor"])
    config = SuiteConfig(name, description, dataset, tuple(entries_b), tuple(entries_m), seeds,
                         training, budgets, evaluation, tune, baseline, plugin_list, executor)
    tuned = {(b.label, m.label) for b, m in tune_schema.targets(
        c, tune.runs, entries_b, entries_m)} if tune else set()
    slug = slugify(name)
    runs = []
    for i, b in enumerate(entries_b):
        info = costs.check_backbone(c, b, f"backbones[{i}]", num_classes, input_size,
                                    dataset.name)
        budget_list = costs.budgets_for(c, budgets, info, b.label)
        evaluation_schema.check_on_backbone(c, evaluation, info.num_exits, num_classes,
                                            b.label)
        for j, m in enumerate(entries_m):
            stages = method_entries.check_on(c, m, f"methods[{j}]", info, b, num_classes,
                                             training.epochs)
            exit_mmacs = costs.method_mmacs(c, info, b, num_classes, m, method_entries.create(
                c, m, f"methods[{j}]"), f"methods[{j}]")
            costs.check_budgets_for_method(c, budgets, budget_list, exit_mmacs, b, m)
            if (b.label, m.label) in tuned and (tune.epochs or training.epochs) < len(stages):
                c.fail("tune.epochs", f"method {m.label!r} trains in {len(stages)} stages and "
                                      f"needs at least {len(stages)} epochs, found "
                                      f"{tune.epochs}")
            runs += [make_run(config, slug, b, m, seed, num_classes, input_size,
                              exit_mmacs, budget_list) for seed in seeds]
    return config, runs
