"""Setting up one run: seeds, device, data splits, backbone and method. The runner and the
tuning objective share this, so a trial trains exactly what a run would."""
from __future__ import annotations

import platform
import random
import socket
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import bench
import methods
from bench import backbones, data as datasets, flops
from bench.config import DatasetConfig, RunSpec, TrainingConfig, thaw
from bench.pipeline import distributed
from bench.pipeline.distributed import Dist
from bench.store import now


def seed_everything(seed: int) -> None:
    """One seed drives Python, NumPy and torch (the data order and split use it too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str, dist: Dist | None = None) -> torch.device:
    """The training device; under torchrun on GPUs, the local rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist is not None and dist.world_size > 1:
        return torch.device("cuda", dist.local_rank)
    return torch.device(name)


def environment(device: torch.device, code: dict) -> dict:
    """environment.json: versions, device, threads, machine, and the code fingerprint
    (``code``: bench.fingerprint.fingerprint())."""
    try:
        import torchvision
        tv = torchvision.__version__
    except Exception:  # a mismatched torchvision raises RuntimeError, not ImportError
        tv = None
    return {"torch": torch.__version__, "torchvision": tv, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "code_version": bench.__version__, "git_commit": code["git_commit"],
            "code": code, "date": now(), "threads": torch.get_num_threads(),
            "hostname": socket.gethostname()}


class DataCache:
    """A run's data splits, built when the run starts (:func:`set_up`). Splits depend on
    the data set config and the seed: those asked for last are kept, so that runs one
    after another on the same data and seed (the methods of a one-seed suite, the trials
    of a study, a run after the check that its data exist) share them, and dropped before
    other ones are built, so that memory holds one run's data however many seeds a suite
    has."""

    def __init__(self):
        self._key: str | None = None
        self._splits: datasets.Splits | None = None

    def get(self, dataset: DatasetConfig, seed: int) -> datasets.Splits:
        key = repr((dataset.as_dict(), seed))
        if key != self._key:
            self._key = self._splits = None  # the last splits go before the next come
            self._splits = datasets.load(
                dataset.name, dataset.root, download=dataset.download,
                heldout=dataset.heldout, seed=seed, train_subset=dataset.subset.train,
                test_subset=dataset.subset.test, options=thaw(dataset.options))
            self._key = key
        return self._splits


@dataclass
class RunSetup:
    device: torch.device
    splits: datasets.Splits
    model: nn.Module  # on the device, SyncBatchNorm where asked
    method: methods.Method
    params: list[int]  # cumulative parameters per exit (costs.json)


def set_up(spec: RunSpec, options: dict, data: DataCache, training: TrainingConfig,
           dist: Dist | None = None) -> RunSetup:
    """Seed, device, splits, the backbone (initialised from the run's seed) and the method
    with ``options`` (a run's, with tuned values filled in, or a trial's), installed on the
    backbone (gradient rescaling, the method's modules)."""
    dist = dist or Dist()
    device = pick_device(training.device, dist)
    distributed.check_sync_bn(training, device, dist)
    seed_everything(spec.seed)
    splits = data.get(spec.dataset, spec.seed)
    model = backbones.create(spec.backbone_name, num_classes=spec.num_classes, **spec.overrides)
    method = methods.create(spec.method_name, **options)
    method.install(model)  # its modules (if any) drawn after the backbone's initialisation
    params = flops.params_per_exit(model)
    model = distributed.prepare_model(model, training, device, dist)
    model.to(device)
    return RunSetup(device, splits, model, method, params)
