"""bench.pipeline.setup.DataCache: a run's data built when it is asked for, shared by the
runs that follow on the same data and seed, dropped before other data are built."""
from __future__ import annotations

import gc
import weakref

import bench.data
from bench.config import build_suite
from bench.pipeline.setup import DataCache

SUITE = {"name": "data", "dataset": {"name": "synthetic", "heldout": 8,
                                     "options": {"train_size": 24, "test_size": 8,
                                                 "image_size": 8, "num_classes": 2}},
         "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 8}}],
         "methods": ["joint"], "seeds": [0, 1], "training": {"epochs": 1, "device": "cpu"}}


def test_splits_are_shared_by_one_seed_and_dropped_for_the_next(monkeypatch):
    dataset = build_suite(SUITE, "data.yaml").config.dataset
    built = []
    real = bench.data.load

    def counting(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(bench.data, "load", counting)
    cache = DataCache()
    first = cache.get(dataset, 0)
    assert cache.get(dataset, 0) is first and len(built) == 1  # shared, built once
    gone = weakref.ref(first)
    del first, built[:]
    second = cache.get(dataset, 1)
    gc.collect()
    assert gone() is None  # the seed-0 splits were dropped: one seed's data in memory
    assert second.heldout_indices != real("synthetic", "data", heldout=8, seed=0,
                                          options=dict(SUITE["dataset"]["options"])
                                          ).heldout_indices  # the split follows the seed
