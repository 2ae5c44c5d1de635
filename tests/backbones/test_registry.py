import os

import pytest
import torch

from bench import backbones
from bench.backbones import registry
from bench.backbones.common import parameters_per_exit
from bench.backbones.vit import TimmUnavailable


def test_unknown_name_lists_registered():
    with pytest.raises(KeyError, match="registered: .*chain_tiny"):
        backbones.create("resnet50")


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("chain_tiny")(lambda num_classes: None)


def _create(name, **overrides):
    """backbones.create, or a skip where the backbone's library cannot be imported (the
    ViTs need timm, and timm torchvision, which some torch builds lack)."""
    try:
        return backbones.create(name, **overrides)
    except TimmUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("name", backbones.names())
def test_every_backbone_builds_and_runs(name):
    model = _create(name, num_classes=7).eval()
    c, h, w = model.input_size
    x = torch.randn(1, c, h, w)
    with torch.no_grad():
        outs = model(x)
        first = model(torch.randn(1, c, h, w), num_exits=1)
        state, stepwise = model.begin(x), []  # the exit-by-exit API gives the same logits
        for _ in range(model.num_exits):
            f, state = model.advance(state)
            stepwise.append(f)
    assert len(outs) == model.num_exits >= 2
    assert all(o.shape == (1, 7) for o in outs)
    assert len(first) == 1
    assert all(torch.equal(a, b) for a, b in zip(stepwise, outs))


@pytest.mark.parametrize("name", backbones.names())
def test_state_dict_round_trip(name):
    """A second model of the same configuration given the first one's state dict computes
    the same logits, for every exit (what checkpoints, restore and export rely on)."""
    torch.manual_seed(0)
    model = _create(name, num_classes=7).eval()
    torch.manual_seed(1)
    other = _create(name, num_classes=7).eval()
    x = torch.randn(2, *model.input_size)
    with torch.no_grad():
        before = other(x)
        other.load_state_dict(model.state_dict())
        after, want = other(x), model(x)
    assert not all(torch.equal(a, b) for a, b in zip(before, want))  # two seeds differ
    assert all(torch.equal(a, b) for a, b in zip(after, want))


@pytest.mark.parametrize("name", backbones.names())
def test_every_parameter_belongs_to_one_exit(name):
    """The per-exit parameter groups (stage-wise training, per-exit parameter counts) cover
    every parameter once, and exit 1's group is not empty. ImageNet-size backbones (a
    forward per exit at 224x224) only with BENCH_SLOW_TESTS=1."""
    model = _create(name, num_classes=7)
    if model.input_size[-1] > 64 and not os.environ.get("BENCH_SLOW_TESTS"):
        pytest.skip("ImageNet-size backbone: set BENCH_SLOW_TESTS=1")
    groups = parameters_per_exit(model)
    ids = [id(p) for group in groups for p in group]
    assert len(groups) == model.num_exits and groups[0]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
