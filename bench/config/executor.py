"""The ``executor:`` section: which executor hands out the runs (``--executor`` sets its
``name``) and each executor's options, under its own name so that a suite can carry the
options of several (docs/scaling.md). Never part of a run id, a study name or suite.json:
where a run trains does not change what it is."""
from typing import Any, Optional

from bench.config.types import Choice, Config, Flag, Int, Key, Number, Text


class RayConfig(Config):
    address: Optional[Text] = Key(None, "join this cluster (--ray-address); null: start one")
    num_cpus: Number = Key(1.0, "CPUs per run (and per tuning worker)", ge=0)
    num_gpus: Optional[Number] = Key(None, "GPUs per run; null: 1 where the cluster has GPUs "
                                     "and training.device is not cpu", ge=0)
    results: Choice("results mode", ("shared", "driver")) = Key(
        "shared", "shared: every node writes the results; driver: the driver writes them")
    max_retries: Int = Key(3, "restarts of a run whose worker process dies", ge=0)
    tune_workers: Int = Key(2, "bench tune: actors sharing each study", ge=1)


class SlurmConfig(Config):
    cluster: Choice("cluster", ("slurm", "local")) = Key(
        "slurm", "local: submitit's local executor (this machine, no SLURM)")
    partition: Optional[Text] = Key(None, "--partition; null: the cluster's default")
    gpus: Optional[Int] = Key(None, "GPUs per run; null: 1 when training.device asks for "
                              "CUDA (or auto and this machine sees a GPU)", ge=0)
    cpus: Int = Key(1, "--cpus-per-task", ge=1)
    mem_gb: Optional[Number] = Key(None, "--mem; null: the cluster's default", gt=0)
    time_min: Int = Key(1440, "--time in minutes, per job (a requeued job starts again)", ge=1)
    array_parallelism: Optional[Int] = Key(None, "runs at once at most; null: no limit", ge=1)
    max_requeue: Int = Key(3, "requeues after a time-out (preemptions do not count)", ge=0)
    tune_workers: Int = Key(2, "bench tune: jobs sharing each study", ge=1)
    wait: Flag = Key(True, "false: submit, print the job ids and return")


class ExecutorConfig(Config):
    """``executor: ray`` means ``{name: ray}``."""
    name: Choice("executor", ("local", "ray", "slurm")) = Key("local", "what --executor sets")
    ray: RayConfig = Key(RayConfig, "the Ray executor's options")
    slurm: SlurmConfig = Key(SlurmConfig, "the SLURM executor's options (submitit)")

    @classmethod
    def given(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value
