"""The ``executor:`` section: which executor hands out the runs (``--executor`` sets its
``name``) and each executor's options, under its own name so that a suite can carry the
options of several (bench.config.defaults: EXECUTOR, RAY, SLURM; docs/scaling.md).

It is never part of a run id, a study name or suite.json: where a run trains does not
change what it is.
"""
from __future__ import annotations

from typing import Any

from bench.config import defaults as D
from bench.config.checker import Checker
from bench.config.schema import ExecutorConfig, RayConfig, SlurmConfig


def validate(c: Checker, value: Any) -> ExecutorConfig:
    if isinstance(value, str):  # ``executor: ray`` means ``executor: {name: ray}``
        value = {"name": value}
    e = c.mapping(value, "executor", D.EXECUTOR)
    name = c.choice(e["name"], "executor.name", D.EXECUTORS, "executor")
    return ExecutorConfig(name, ray(c, e["ray"]), slurm(c, e["slurm"]))


def ray(c: Checker, value: Any) -> RayConfig:
    r = c.mapping(value, "executor.ray", D.RAY)
    if r["address"] is not None:
        c.string(r["address"], "executor.ray.address")
    cpus = c.number(r["num_cpus"], "executor.ray.num_cpus", lo=0)
    gpus = None if r["num_gpus"] is None else c.number(r["num_gpus"], "executor.ray.num_gpus",
                                                        lo=0)
    c.choice(r["results"], "executor.ray.results", D.RAY_RESULTS, "results mode")
    c.integer(r["max_retries"], "executor.ray.max_retries", lo=0)
    c.integer(r["tune_workers"], "executor.ray.tune_workers", lo=1)
    return RayConfig(r["address"], cpus, gpus, r["results"], r["max_retries"],
                     r["tune_workers"])


def slurm(c: Checker, value: Any) -> SlurmConfig:
    s = c.mapping(value, "executor.slurm", D.SLURM)
    c.choice(s["cluster"], "executor.slurm.cluster", D.SLURM_CLUSTERS, "cluster")
    if s["partition"] is not None:
        c.string(s["partition"], "executor.slurm.partition")
    c.integer(s["gpus"], "executor.slurm.gpus", lo=0, null=True)
    c.integer(s["cpus"], "executor.slurm.cpus", lo=1)
    mem = None if s["mem_gb"] is None else c.number(s["mem_gb"], "executor.slurm.mem_gb",
                                                     lo=0, open_lo=True)
    c.integer(s["time_min"], "executor.slurm.time_min", lo=1)
    c.integer(s["array_parallelism"], "executor.slurm.array_parallelism", lo=1, null=True)
    c.integer(s["max_requeue"], "executor.slurm.max_requeue", lo=0)
    c.integer(s["tune_workers"], "executor.slurm.tune_workers", lo=1)
    c.boolean(s["wait"], "executor.slurm.wait")
    return SlurmConfig(s["cluster"], s["partition"], s["gpus"], s["cpus"], mem, s["time_min"],
                       s["array_parallelism"], s["max_requeue"], s["tune_workers"], s["wait"])
