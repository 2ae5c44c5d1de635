import pytest
import torch
from torch import nn

from bench import backbones, flops
from bench.backbones.common import parameters_per_exit


class TwoExit(nn.Module):
    """conv(3->4, 3x3) -> head1; a side conv that only exit 2 reads; conv -> head2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.side = nn.Conv2d(4, 4, 1, bias=False)  # runs in block 1, read only by exit 2
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, stride=2, bias=False)
        self.head1 = nn.Linear(4 * 8 * 8, 10)
        self.head2 = nn.Linear(4 * 4 * 4, 10)
        self.pool = nn.AvgPool2d(2)
        self.num_exits, self.input_size = 2, (3, 8, 8)

    def forward(self, x, num_exits=None):
        h = torch.relu(self.conv1(x))
        side = self.side(h)
        outs = [self.head1(h.flatten(1))]
        if num_exits == 1:
            return outs
        h2 = self.conv2(h + side)
        return outs + [self.head2(h2.flatten(1))]


def test_exact_counts_by_hand():
    model = TwoExit()
    conv1 = 3 * 4 * 9 * 64  # C_in * C_out * k*k * H*W
    side = 4 * 4 * 1 * 64
    head1 = 256 * 10
    conv2 = 4 * 4 * 9 * 16
    head2 = 64 * 10
    # Exit 1 includes the side conv: an early-exit net runs it before it knows it exits.
    assert flops.per_exit(model) == [conv1 + side + head1, conv1 + side + head1 + conv2 + head2]


def test_params_per_exit_counts_executed_modules():
    model = TwoExit()
    first = 3 * 4 * 9 + 4 * 4 + 256 * 10 + 10
    assert flops.params_per_exit(model) == [first, first + 4 * 4 * 9 + 64 * 10 + 10]
    groups = parameters_per_exit(model)
    assert {id(p) for p in groups[1]} == {id(p) for m in (model.conv2, model.head2)
                                         for p in m.parameters()}


def test_chain_tiny_counts_by_hand():
    model = backbones.create("chain_tiny", num_classes=10)
    def block(c_in, c_out, hw):
        # conv MACs + fvcore's eval-mode batch norm (2 per element with affine)
        return c_in * c_out * 9 * hw * hw + 2 * c_out * hw * hw
    def head(c, hw):  # adaptive average pool (1 per input element) + linear
        return c * hw * hw + c * 10
    e1 = block(3, 8, 32) + head(8, 32)
    e2 = e1 + block(8, 16, 16) + head(16, 16)
    e3 = e2 + block(16, 32, 8) + head(32, 8)
    assert flops.per_exit(model) == [e1, e2, e3]


class Unknown(nn.Module):
    num_exits, input_size = 1, (3, 4, 4)

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(48, 2)

    def forward(self, x, num_exits=None):
        return [self.lin(torch.sigmoid(x).flatten(1))]


def test_unexpected_op_is_an_error():
    with pytest.raises(flops.UnsupportedOpError, match="aten::sigmoid"):
        flops.per_exit(Unknown())


def test_gradient_rescale_is_free():
    model = backbones.create("chain_tiny")
    plain = flops.per_exit(model)
    model.grad_rescale = True
    assert flops.per_exit(model) == plain


def test_cost_cache_returns_the_same_counts_and_notices_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = backbones.create("chain_tiny")
    first = flops.per_exit_cached(model)
    assert first == flops.per_exit(model)
    assert (tmp_path / "boostnet-bench" / "costs.json").exists()
    assert flops.per_exit_cached(model) == first
    wider = backbones.create("chain_tiny", channels=(8, 16, 48))
    assert flops.per_exit_cached(wider) == flops.per_exit(wider) != first
