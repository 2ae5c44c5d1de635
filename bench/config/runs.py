"""Runs: a suite expanded into backbone x method x seed, each with its identity; the studies
that tune them and their names.

A run's id is ``<backbone label>--<method label>--s<seed>--<hash8>``, hash8 from SHA-256 of
the canonical JSON of the run's config (what config.json holds), leaving out the keys in
``NOT_HASHED``. The config keeps the keys and values it always had (``code_version`` is the
fixed "0.1.0"), so results keep their ids when the code changes; the code fingerprint
(bench.fingerprint) says which code made a run.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from bench.config.schema import (AMP_PRECISION, BackboneEntry, DatasetConfig, EvaluationConfig,
                                 LatencyConfig, MethodEntry, SuiteConfig, TrainingConfig)
from bench.config.tune import TuneConfig, targets, tuned_options
from bench.config.types import freeze, thaw

# Part of every run id, frozen: results keep their ids across code changes, which the code
# fingerprint (bench.fingerprint) tracks instead.
CODE_VERSION = "0.1.0"
# Run-config keys that cannot change a trained model; left out of the run id's hash, so
# moving the data, changing the loader processes or evaluating differently from the saved
# logits does not orphan finished runs.
NOT_HASHED = (("suite",), ("run_id",), ("dataset", "root"), ("dataset", "download"),
              ("dataset", "options", "workers"), ("training", "workers"), ("evaluation",),
              ("tuned",))
# Keys added to the schema after run ids were first pinned, with the value that reproduces
# what runs did before the key existed: at that value they are left out of the hash, so a
# finished run keeps its id when the schema grows; any other value is hashed as usual.
HASHED_UNLESS = {
    ("dataset", "options", "min_scale"): 1.0,  # synthetic: objects drawn at full size
    ("dataset", "options", "clutter"): 0.0,  # synthetic: plain background
    ("dataset", "options", "min_difficulty"): 0.0,  # synthetic: difficulties from 0
    ("dataset", "options", "normalization"): "standard",  # CIFAR: the usual constants
    ("training", "drop_last"): True,  # the last partial training batch dropped
    ("training", "cuda_graphs"): False,  # eager training steps
    ("training", "regime"): "joint",  # every parameter from the start (methods.regimes)
    ("training", "backbone_epochs"): None,  # no phase 1 (joint runs have none)
}
# Tune keys that do not change what a trial's value means: left out of the study hash, so
# a study can be extended (more trials, another sampler or pruner) and still resume.
NOT_IN_STUDY_HASH = ("runs", "trials", "timeout", "sampler", "pruner")


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    suite_slug: str
    backbone: BackboneEntry
    method: MethodEntry
    seed: int
    num_classes: int
    input_size: tuple[int, int, int]
    exit_mmacs: tuple[float, ...]  # cumulative MMACs per exit
    budgets_mmacs: tuple[float, ...]
    dataset: DatasetConfig
    training: TrainingConfig
    evaluation: EvaluationConfig
    tune: TuneConfig | None  # the suite's, for runs with a tuned option
    frozen_config: Mapping[str, Any]
    # ms budgets and where their latency is measured: evaluation only, never in the run id
    budgets_ms: tuple[float, ...] = ()
    latency: LatencyConfig | None = None

    @property
    def config(self) -> dict:
        """The run's resolved config as plain data (a fresh copy): what config.json holds
        besides ``suite`` and ``run_id``, and what the run id hashes."""
        return thaw(self.frozen_config)

    @property
    def labels(self) -> str:
        """``backbone/method/seed``, what ``select`` matches besides the run id."""
        return f"{self.backbone.label}/{self.method.label}/{self.seed}"

    # Shorthands the pipeline, the executors and the commands use.
    backbone_name = property(lambda self: self.backbone.name)
    backbone_label = property(lambda self: self.backbone.label)
    overrides = property(lambda self: thaw(self.backbone.overrides))
    method_name = property(lambda self: self.method.name)
    method_label = property(lambda self: self.method.label)
    method_options = property(lambda self: thaw(self.method.options))


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def run_hash(config: dict) -> str:
    """hash8 of a run config: the NOT_HASHED keys left out, and the HASHED_UNLESS keys
    where they hold the value that reproduces runs made before they existed."""
    hashed = copy.deepcopy(config)
    for keys in NOT_HASHED:
        _pop(hashed, keys)
    for keys, legacy in HASHED_UNLESS.items():
        _pop(hashed, keys, only_if=legacy)
    _as_amp(hashed.get("training"))
    return hashlib.sha256(canonical(hashed).encode()).hexdigest()[:8]


def _as_amp(training: Any) -> None:
    """training.precision fp32 / fp16 hashed as training.amp false / true, the key it
    replaced, so that runs made before it keep their ids (auto and bf16 are hashed as they
    are)."""
    amp = {p: a for a, p in AMP_PRECISION.items()}
    if isinstance(training, dict) and training.get("precision") in amp:
        training["amp"] = amp[training.pop("precision")]


_ALWAYS = object()  # _pop's only_if when the key goes whatever it holds


def _pop(config: dict, keys: tuple, only_if: Any = _ALWAYS) -> None:
    """Remove the key at path ``keys`` (if ``only_if`` is given: only when it holds that)."""
    node = config
    for k in keys[:-1]:
        node = node.get(k, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict) and keys[-1] in node:
        if only_if is _ALWAYS or node[keys[-1]] == only_if:
            node.pop(keys[-1])


def run_config(suite: SuiteConfig, backbone: BackboneEntry, method: MethodEntry, seed: int,
               num_classes: int, input_size: Sequence[int], budgets: Sequence[float]) -> dict:
    """Everything a run depends on, as plain data (keys in config.json's order)."""
    config = {
        "code_version": CODE_VERSION,
        "dataset": suite.dataset.as_dict(),
        "num_classes": num_classes,
        "input_size": list(input_size),
        "training": suite.training_for(method).as_dict(),
        "backbone": backbone.as_dict(),
        "method": method.identity(),
        "seed": seed,
        "budgets_mmacs": list(budgets),
        "evaluation": suite.evaluation.as_dict(),
    }
    if method.tuned:
        config["tune"] = suite.tune.as_dict()  # how the tuned options are chosen
    return json.loads(json.dumps(config, allow_nan=False))


def make_run(suite: SuiteConfig, slug: str, backbone: BackboneEntry, method: MethodEntry,
             seed: int, num_classes: int, input_size: tuple, exit_mmacs: Sequence[float],
             budgets: Sequence[float]) -> RunSpec:
    config = run_config(suite, backbone, method, seed, num_classes, input_size, budgets)
    return RunSpec(
        run_id=f"{backbone.label}--{method.label}--s{seed}--{run_hash(config)}",
        suite_slug=slug, backbone=backbone, method=method, seed=seed,
        num_classes=num_classes, input_size=tuple(input_size),
        exit_mmacs=tuple(exit_mmacs), budgets_mmacs=tuple(budgets), dataset=suite.dataset,
        training=suite.training_for(method), evaluation=suite.evaluation,
        tune=suite.tune if method.tuned else None, frozen_config=freeze(config),
        budgets_ms=tuple(float(b) for b in suite.budgets.ms or ()),
        latency=suite.budgets.latency if suite.budgets.ms else None)


def select(runs: Sequence[RunSpec], pattern: str) -> list[RunSpec]:
    """Runs whose id or ``backbone/method/seed`` labels match the shell-style ``pattern``."""
    return [r for r in runs
            if fnmatch.fnmatchcase(r.run_id, pattern) or fnmatch.fnmatchcase(r.labels, pattern)]


def select_targets(suite, pattern: str | None = None) -> list[RunSpec]:
    """One run spec per (backbone, method) to tune, with seed ``tune.seed``; ``pattern``
    (``--only``) narrows them (run id, ``backbone/method/seed`` or ``backbone/method``)."""
    tc = suite.config.tune
    wanted = {(b.label, m.label) for b, m in targets(tc.runs, suite.config.backbones,
                                                     suite.config.methods)}
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
    config["tuning"] = {k: v for k, v in tune.as_dict().items() if k not in NOT_IN_STUDY_HASH}
    return f"{spec.suite_slug}--{spec.backbone_label}--{spec.method_label}--{run_hash(config)}"
