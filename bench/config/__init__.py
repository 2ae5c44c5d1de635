"""The suite schema: typed frozen configs, YAML loading, ``--set`` overrides, the one table
of defaults (bench.config.defaults), validation against the registries, plugins, run
expansion and run identity.

    suite = config.load_suite("suites/quickstart.yaml", ["training.epochs=2"])
    suite.config.training.epochs, [r.run_id for r in suite.runs]
"""
from bench.config.costs import BackboneInfo, backbone_info
from bench.config.defaults import CODE_VERSION, TUNED
from bench.config.checker import Checker
from bench.config.loading import read_slug, slugify
from bench.config.method_entries import resolve_methods
from bench.config.runs import RunSpec, run_hash, select
from bench.config.schema import (BackboneEntry, BudgetsConfig, DatasetConfig, EvaluationConfig,
                                 ExecutorConfig, MethodEntry, OptimizerConfig, PrunerConfig,
                                 RayConfig, SamplerConfig, ScheduleConfig, SlurmConfig,
                                 SpaceConfig, SuiteConfig, TrainingConfig, TuneConfig, freeze,
                                 thaw)
from bench.config.suite import Suite, build_suite, load_suite
from bench.config.tune import select_targets, study_name, tuned_options
from bench.errors import SuiteError

__all__ = ["BackboneEntry", "BackboneInfo", "BudgetsConfig", "CODE_VERSION", "Checker",
           "DatasetConfig", "EvaluationConfig", "ExecutorConfig", "MethodEntry", "OptimizerConfig",
           "PrunerConfig", "RayConfig", "RunSpec", "SamplerConfig", "ScheduleConfig",
           "SlurmConfig", "SpaceConfig", "Suite",
           "SuiteConfig", "SuiteError", "TUNED", "TrainingConfig", "TuneConfig",
           "backbone_info", "build_suite", "freeze", "load_suite", "read_slug",
           "resolve_methods", "run_hash", "select", "select_targets", "slugify", "study_name",
           "thaw", "tuned_options"]
