import pytest
import torch
import torch.nn.functional as F

from methods.lib.cascade import (CascadeClassifiers, CascadeHead, CascadeLink,
                                 cascade_extra_macs, cascade_head_macs)


def set_linear(linear, weight, bias):
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.tensor(bias, dtype=linear.bias.dtype))


def test_forward_by_hand():
    cascade = CascadeClassifiers([1, 2], num_classes=2).double()
    set_linear(cascade.heads[0].linear, [[1.0], [-1.0]], [0.0, 1.0])
    # W_2 over [h_2 (2 values) ; f_1 (2 values)]
    set_linear(cascade.heads[1].linear, [[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, -1.0]],
               [0.5, 0.0])
    h1 = torch.tensor([[3.0]], dtype=torch.float64)
    h2 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    f1, f2 = cascade([h1, h2])
    assert f1.tolist() == [[3.0, -2.0]]
    assert f2.tolist() == [[1.0 + 2 * 3.0 + 0.5, 2.0 + 2.0]]


def test_layer_norm_normalises_the_carried_logits():
    head = CascadeHead(1, 2, cascades=True, layer_norm=True).double()
    set_linear(head.linear, [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.0, 0.0])
    got = head(torch.zeros(1, 1, dtype=torch.float64),
               torch.tensor([[5.0, 1.0]], dtype=torch.float64))
    # LayerNorm of (5, 1): mean 3, variance 4 -> (1, -1) up to its eps
    torch.testing.assert_close(got, torch.tensor([[1.0, -1.0]], dtype=torch.float64),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_no_gradient_reaches_the_previous_exit(layer_norm):
    torch.manual_seed(0)
    cascade = CascadeClassifiers([4, 3, 5], num_classes=6, layer_norm=layer_norm)
    features = [torch.randn(2, d, requires_grad=True) for d in (4, 3, 5)]
    f = cascade(features)
    assert [tuple(t.shape) for t in f] == [(2, 6)] * 3
    F.cross_entropy(f[2], torch.tensor([1, 5])).backward()
    trained = {name for name, p in cascade.named_parameters() if p.grad is not None}
    expected = {"heads.2.linear.weight", "heads.2.linear.bias"}
    if layer_norm:
        expected |= {"heads.2.norm.weight", "heads.2.norm.bias"}
    assert trained == expected
    assert features[0].grad is None and features[1].grad is None
    assert features[2].grad is not None


def test_shapes_and_errors():
    cascade = CascadeClassifiers([8, 6], num_classes=5, layer_norm=True)
    assert cascade.heads[0].linear.in_features == 8
    assert isinstance(cascade.heads[0].norm, torch.nn.Identity)
    assert cascade.heads[1].linear.in_features == 6 + 5
    with pytest.raises(ValueError, match="cascade has 2 exits, got 1 features"):
        cascade([torch.randn(1, 8)])
    with pytest.raises(ValueError, match="needs f_"):
        cascade.heads[1](torch.randn(1, 6))
    with pytest.raises(ValueError, match="first exit's cascade head takes no previous"):
        cascade.heads[0](torch.randn(1, 8), torch.randn(1, 5))


def test_macs_formula():
    assert cascade_extra_macs([128] * 3, 100) == [0, 10_000, 10_000]
    assert cascade_head_macs([128, 64], 100, layer_norm=True) == [12_800, 16_400 + 500]


@pytest.mark.parametrize("layer_norm", [False, True])
def test_fvcore_counts_each_head_exactly(layer_norm, fvcore_macs):
    dims, C = [12, 7, 9], 5
    cascade = CascadeClassifiers(dims, C, layer_norm=layer_norm).eval()
    h = [torch.randn(1, d) for d in dims]
    counted = [fvcore_macs(cascade.heads[0], h[0])]
    counted += [fvcore_macs(cascade.heads[n], h[n], torch.randn(1, C)) for n in (1, 2)]
    assert counted == cascade_head_macs(dims, C, layer_norm)
    extra = [c - C * d for c, d in zip(counted, dims)]
    assert extra[1:] == [C * C + (5 * C if layer_norm else 0)] * 2


@pytest.mark.parametrize("layer_norm", [False, True])
def test_link_plus_own_linear_is_the_concatenated_head(layer_norm):
    torch.manual_seed(0)
    d, C = 6, 4
    head = CascadeHead(d, C, cascades=True, layer_norm=layer_norm)
    own = torch.nn.Linear(d, C)
    link = CascadeLink(d, C, layer_norm=layer_norm)
    with torch.no_grad():
        own.weight.copy_(head.linear.weight[:, :d])
        own.bias.copy_(head.linear.bias)
        link.linear.weight.copy_(head.linear.weight[:, d:])
    h, prev = torch.randn(3, d), torch.randn(3, C, requires_grad=True)
    torch.testing.assert_close(own(h) + link(prev), head(h, prev))
    link(prev).sum().backward()
    assert prev.grad is None  # detached
    bound = 1 / (d + C) ** 0.5
    fresh = CascadeLink(d, C).linear.weight
    assert fresh.abs().max() <= bound and fresh.abs().max() > 0.5 * bound
