"""A small data set and trainer for the methods' stage, phase and checkpoint tests."""
import pytest
import torch

import methods
from bench import backbones, data
from bench.config import TrainingConfig
from bench.pipeline.train import Trainer

TRAINING = {"epochs": 2, "batch_size": 32, "eval_batch_size": 64, "device": "cpu",
            "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}}


@pytest.fixture(scope="session")
def splits():
    return data.load("synthetic", "unused", heldout=48, seed=0, train_subset=96,
                     test_subset=32, options={"train_size": 160, "test_size": 32,
                                              "image_size": 16, "num_classes": 4})


@pytest.fixture
def make_trainer(splits):
    """``make_trainer(checkpoint_dir, method, epochs=2, backbone="chain_tiny", **options)``:
    a fresh model (seed 0) and method, as a run would set them up."""

    def make(folder, method, epochs=2, backbone="chain_tiny", **options):
        torch.manual_seed(0)
        model = backbones.create(backbone, num_classes=4, image_size=16)
        cfg = TrainingConfig.model_validate({**TRAINING, "epochs": epochs})
        return Trainer(model, methods.create(method, **options), splits, cfg, seed=0,
                       device=torch.device("cpu"), checkpoint=folder / "checkpoint.pt")

    return make


@pytest.fixture
def same_state():
    """Whether two state dicts hold the same keys and bit-identical tensors."""
    return lambda a, b: a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
