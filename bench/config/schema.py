"""The suite schema as typed, frozen configs, filled by the checks in bench.config.

Every config converts back to the plain JSON data it was resolved to (``as_dict``): that is
what suite.json and config.json hold and what run ids hash. Mappings inside configs are
read-only (``types.MappingProxyType``) and lists are tuples; :func:`thaw` gives plain data.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from bench.config.defaults import TUNED

OMIT_IF_NONE = {"omit_if_none": True}


def freeze(value: Any) -> Any:
    """Plain data made read-only: dicts -> MappingProxyType, lists -> tuples."""
    if isinstance(value, (dict, MappingProxyType)):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Configs and frozen data back to plain JSON data (dicts, lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.as_dict()
    if isinstance(value, (dict, MappingProxyType)):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


class Config:
    """Base of the typed configs: ``as_dict`` in field order; fields marked OMIT_IF_NONE
    are left out when None (a schedule without milestones has no such key)."""

    def as_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_if_none"):
                continue
            out[f.name] = thaw(value)
        return out

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Subset(Config):
    train: int | None
    test: int | None


@dataclass(frozen=True)
class DatasetConfig(Config):
    name: str
    root: str
    download: bool
    heldout: int
    subset: Subset
    options: Mapping[str, Any]  # the data set's own options, defaults filled


@dataclass(frozen=True)
class OptimizerConfig(Config):
    name: str
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool


@dataclass(frozen=True)
class ScheduleConfig(Config):
    """``step``: lr x gamma at each milestone (fractions of each stage's epochs);
    ``cosine``; ``constant``."""

    name: str
    milestones: tuple[float, ...] | None = field(default=None, metadata=OMIT_IF_NONE)
    gamma: float | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass(frozen=True)
class TrainingConfig(Config):
    epochs: int
    batch_size: int  # per process
    eval_batch_size: int
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    device: str  # auto | cpu | cuda | cuda:N
    precision: str  # auto | fp32 | bf16 | fp16 (bench.engine.precision)
    workers: int
    channels_last: bool
    sync_bn: bool
    compile: bool
    drop_last: bool = True  # False: keep the last partial training batch (the reference)


@dataclass(frozen=True)
class BudgetsConfig(Config):
    mmacs: tuple[float, ...] | None  # absolute
    fractions: tuple[float, ...] | None  # of the last exit's cost


@dataclass(frozen=True)
class EvaluationConfig(Config):
    """How metrics are computed from saved logits (never part of a run id)."""

    calibration: bool
    criteria: tuple[str, ...] = ("max_softmax",)  # bench.evaluate.criteria names
    # bench.evaluate.combiners as {"name": ..., **options}, e.g. {name: product, weights: linear}
    combiners: tuple[Mapping[str, Any], ...] = (MappingProxyType({"name": "none"}),)
    global_threshold: bool = False  # also fit one threshold at every exit (a variant)


@dataclass(frozen=True)
class BackboneEntry(Config):
    name: str
    label: str
    overrides: Mapping[str, Any]  # constructor arguments


@dataclass(frozen=True)
class MethodEntry(Config):
    """A method of the suite: registry name, label, every option (``tuned`` where the
    suite's study chooses it). ``reference``: its options are the method's defaults;
    ``paper``: the paper's curve it stands for (bench.evaluate.paper), on one reference entry."""

    name: str
    label: str
    options: Mapping[str, Any]
    reference: bool = False
    paper: str | None = field(default=None, metadata=OMIT_IF_NONE)

    @property
    def tuned(self) -> tuple[str, ...]:
        """Options whose value the suite's study chooses."""
        return tuple(k for k, v in self.options.items() if v == TUNED)

    def identity(self) -> dict:
        """What the run config (and so the run id) holds of the entry."""
        return {"name": self.name, "label": self.label, "options": thaw(self.options)}


@dataclass(frozen=True)
class SpaceConfig(Config):
    per_exit: bool
    low: float
    high: float
    log: bool


@dataclass(frozen=True)
class SamplerConfig(Config):
    name: str
    seed: int


@dataclass(frozen=True)
class PrunerConfig(Config):
    name: str
    params: Mapping[str, Any]  # the pruner's own arguments

    def as_dict(self) -> dict:
        return {"name": self.name, **thaw(self.params)}


@dataclass(frozen=True)
class TuneConfig(Config):
    runs: str | None
    seed: int
    space: SpaceConfig
    trials: int
    timeout: float | None
    epochs: int | None
    objective: str
    sampler: SamplerConfig
    pruner: PrunerConfig


@dataclass(frozen=True)
class RayConfig(Config):
    address: str | None
    num_cpus: float  # per run
    num_gpus: float | None  # per run; None: decided when the cluster is known
    results: str  # shared | driver
    max_retries: int
    tune_workers: int


@dataclass(frozen=True)
class SlurmConfig(Config):
    cluster: str  # slurm | local
    partition: str | None
    gpus: int | None  # per run; None: decided from training.device
    cpus: int
    mem_gb: float | None
    time_min: int
    array_parallelism: int | None
    max_requeue: int
    tune_workers: int
    wait: bool


@dataclass(frozen=True)
class ExecutorConfig(Config):
    """How runs are handed out (bench.executors); never part of a run id."""

    name: str  # local | ray | slurm
    ray: RayConfig
    slurm: SlurmConfig


@dataclass(frozen=True)
class SuiteConfig(Config):
    name: str
    description: str
    dataset: DatasetConfig
    backbones: tuple[BackboneEntry, ...]
    methods: tuple[MethodEntry, ...]
    seeds: tuple[int, ...]
    training: TrainingConfig
    budgets: BudgetsConfig
    evaluation: EvaluationConfig
    tune: TuneConfig | None
    baseline: str | None  # the label every other method is compared with
    plugins: tuple[str, ...]  # files (absolute paths) or module names
    executor: ExecutorConfig | None = None  # None: the local executor's defaults
