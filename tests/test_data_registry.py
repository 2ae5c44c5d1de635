"""The data-set registry: built-in data sets registered through it, a new one registered
with its options and loader, served and split like the others, and named errors."""
from __future__ import annotations

import pytest
import torch

from bench import data
from bench.config import SuiteError, build_suite

BUILT_IN = ["cifar10", "cifar100", "fashion_mnist", "imagenet", "mnist", "synthetic"]


@data.register("test_registry_bars", options={"train_size": 60, "test_size": 20},
               num_classes=2, input_size=(1, 8, 8), heldout=10)
def bars(request: data.Request) -> data.Images:
    """Class 0: a horizontal bar, class 1: a vertical one, at a row/column given by i."""

    def make(n: int, offset: int):
        x = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
        y = torch.arange(n) % 2
        for i in range(n):
            k = (i + offset) % 8
            if y[i] == 0:
                x[i, 0, k, :] = 255
            else:
                x[i, 0, :, k] = 255
        return x, y

    o = request.options
    return data.Images(*make(o["train_size"], 0), *make(o["test_size"], 3), num_classes=2,
                       crop_padding=0, flip=False)


@data.register("test_registry_broken", num_classes=2)
def broken(request: data.Request):
    return data.Images(torch.zeros(4, 1, 8, 8), torch.zeros(4), torch.zeros(2, 1, 8, 8,
                       dtype=torch.uint8), torch.zeros(2), num_classes=2)


def test_the_built_in_data_sets_are_registered_through_the_registry():
    built_in = [n for n in data.names() if data.get(n).module.startswith("bench.data")]
    assert built_in == BUILT_IN
    assert data.options_of("cifar100") == {"augment": True, "normalization": "standard"}
    assert data.options_of("mnist") == {"augment": True, "image_size": 32, "channels": 3}
    assert data.get("imagenet").default_heldout({}) == 50000
    assert data.get("synthetic").default_heldout({"train_size": 3500}) == 700
    assert data.get("cifar100").shape({}) == (100, (3, 32, 32))
    assert data.get("mnist").shape({"image_size": 28, "channels": 1}) == (10, (1, 28, 28))


def test_a_registered_data_set_is_split_and_served_like_the_others():
    s = data.load("test_registry_bars", "unused", heldout=10, seed=1)
    assert (s.size("train"), s.size("heldout"), s.size("test")) == (50, 10, 20)
    assert s.num_classes == 2 and s.input_size == (1, 8, 8)
    assert sorted(s.train_indices + s.heldout_indices) == list(range(60))
    assert s.heldout_indices == data.split_indices(60, 10, 1)[1].tolist()
    x, y = next(s.batches("test", 20))
    assert x.shape == (20, 1, 8, 8) and x.dtype == torch.float32
    assert y.tolist() == [i % 2 for i in range(20)]
    small = data.load("test_registry_bars", "u", heldout=10, seed=1, train_subset=5,
                      options={"train_size": 30})
    assert (small.size("train"), small.size("heldout")) == (5, 10)


def test_duplicates_unknown_names_and_options_are_errors():
    with pytest.raises(ValueError, match="already registered"):
        data.register("test_registry_bars", num_classes=2)(bars)
    with pytest.raises(ValueError, match="option 'augment'"):
        data.register("x", options={"augment": False}, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        data.register("x")
    with pytest.raises(ValueError, match=r"unknown data set 'nope'; registered: .*cifar10.*"
                                         r"test_registry_bars"):
        data.load("nope", "u", heldout=1, seed=0)
    with pytest.raises(ValueError, match=r"\['colour'\].*test_registry_bars.*train_size"):
        data.load("test_registry_bars", "u", heldout=1, seed=0, options={"colour": 1})


def test_a_loader_that_returns_bad_images_is_named():
    with pytest.raises(ValueError, match=r"'test_registry_broken': train_images must be a "
                                         r"uint8 tensor \(N, C, H, W\), got torch.float32"):
        data.load("test_registry_broken", "u", heldout=1, seed=0)


def test_a_suite_takes_the_registered_options_shape_and_held_out_default():
    suite = build_suite({"name": "bars", "dataset": {"name": "test_registry_bars",
                                                     "options": {"train_size": 40}},
                         "backbones": [{"name": "chain_tiny", "overrides": {
                             "in_channels": 1, "image_size": 8}}],
                         "methods": ["joint"], "training": {"epochs": 1}}, "bars.yaml")
    (run,) = suite.runs
    assert suite.config.dataset.heldout == 10
    assert dict(suite.config.dataset.options) == {"augment": True, "train_size": 40,
                                                  "test_size": 20}
    assert run.num_classes == 2 and tuple(run.input_size) == (1, 8, 8)
    with pytest.raises(SuiteError, match=r"dataset.heldout.*train_size = 40.*found 40"):
        build_suite({"name": "b", "dataset": {"name": "test_registry_bars", "heldout": 40,
                                              "options": {"train_size": 40}},
                     "backbones": ["chain_tiny"], "methods": ["joint"]}, "b.yaml")
    with pytest.raises(SuiteError, match=r"dataset.name: unknown data set 'bar'; known: "
                                         r".*test_registry_bars"):
        build_suite({"name": "b", "dataset": {"name": "bar"}, "backbones": ["chain_tiny"],
                     "methods": ["joint"]}, "b.yaml")
