import pytest
import torch

from bench import backbones
from bench.backbones import registry


def test_unknown_name_lists_registered():
    with pytest.raises(KeyError, match="registered: .*chain_tiny"):
        backbones.create("resnet50")


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("chain_tiny")(lambda num_classes: None)


@pytest.mark.parametrize("name", backbones.names())
def test_every_backbone_builds_and_runs(name):
    model = backbones.create(name, num_classes=7).eval()
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
