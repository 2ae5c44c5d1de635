"""The suite schema (bench.config.schema: pydantic models, one declaration per key), YAML
loading, ``--set`` overrides, validation against the registries, plugins, run expansion and
run identity.

    suite = config.load_suite("suites/quickstart.yaml", ["training.epochs=2"])
    suite.config.training.epochs, [r.run_id for r in suite.runs]
"""
from bench.config.checker import Checker
from bench.config.costs import BackboneInfo, backbone_info
from bench.config.executor import ExecutorConfig, RayConfig, SlurmConfig
from bench.config.loading import read_name, slugify
from bench.config.runs import CODE_VERSION, RunSpec, run_hash, select, select_targets, study_name
from bench.config.schema import (TUNED, BackboneEntry, BudgetsConfig, DatasetConfig,
                                 EvaluationConfig, MethodEntry, OptimizerConfig, ScheduleConfig,
                                 StepSchedule, SuiteConfig, TrainingConfig)
from bench.config.suite import Suite, build_suite, load_suite, resolve_methods
from bench.config.tune import (PrunerConfig, SamplerConfig, SpaceConfig, TuneConfig,
                               tuned_options)
from bench.config.types import freeze, thaw
from bench.errors import SuiteError

__all__ = ["BackboneEntry", "BackboneInfo", "BudgetsConfig", "CODE_VERSION", "Checker",
           "DatasetConfig", "EvaluationConfig", "ExecutorConfig", "MethodEntry",
           "OptimizerConfig", "PrunerConfig", "RayConfig", "RunSpec", "SamplerConfig",
           "ScheduleConfig", "SlurmConfig", "SpaceConfig", "StepSchedule", "Suite",
           "SuiteConfig", "SuiteError", "TUNED", "TrainingConfig", "TuneConfig",
           "backbone_info", "build_suite", "freeze", "load_suite", "read_name",
           "resolve_methods", "run_hash", "select", "select_targets", "slugify", "study_name",
           "thaw", "tuned_options"]
