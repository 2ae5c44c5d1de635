import pytest
import torch
import torch.nn.functional as F

from methods.lib.distill import distillation_loss
from methods.lib.isc import (ISCHead, InlineCollaboration, isc_extra_macs, isc_head_macs,
                             ofa_loss)


def set_linear(linear, weight, bias):
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.tensor(bias, dtype=linear.bias.dtype))


def tiny_isc(isc_detach=False):
    """Two exits, c = (1, 1), C = 2, with hand-set weights; BN in eval mode with its
    initial statistics (mean 0, var 1) is x / sqrt(1 + 1e-5)."""
    isc = InlineCollaboration([1, 1], num_classes=2, isc_detach=isc_detach).double().eval()
    set_linear(isc.heads[0].linear, [[2.0], [-1.0]], [0.5, 0.0])
    set_linear(isc.heads[1].collaboration[0], [[1.0, -2.0]], [0.25])
    set_linear(isc.heads[1].linear, [[1.0, 3.0], [0.0, -1.0]], [0.0, 1.0])
    return isc


def test_forward_by_hand():
    isc = tiny_isc()
    h1 = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    h2 = torch.tensor([[0.5], [4.0]], dtype=torch.float64)
    g1, g2 = isc([h1, h2])
    # g_1 = [2 h1 + 0.5, -h1]
    assert g1.tolist() == [[2.5, -1.0], [-3.5, 2.0]]
    bn = (1 + 1e-5) ** -0.5
    # u_2 = ReLU(BN(g_1[0] - 2 g_1[1] + 0.25)): sample 1: 4.75 bn, sample 2: relu(-7.25 bn) = 0
    u = [4.75 * bn, 0.0]
    expected = [[h + 3 * v, -v + 1.0] for h, v in zip([0.5, 4.0], u)]
    torch.testing.assert_close(g2, torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-14, atol=0)


def test_shapes_and_parameter_counts():
    isc = InlineCollaboration([8, 6, 4], num_classes=5)
    g = isc([torch.randn(3, 8), torch.randn(3, 6), torch.randn(3, 4)])
    assert [tuple(t.shape) for t in g] == [(3, 5)] * 3
    heads = isc.heads
    assert heads[0].collaboration is None and heads[0].linear.in_features == 8
    assert heads[1].linear.in_features == 12 and heads[2].linear.in_features == 8
    assert heads[2].collaboration[0].in_features == 5
    assert heads[2].collaboration[0].out_features == 4
    with pytest.raises(ValueError, match="ISC has 3 exits, got 2 features"):
        isc([torch.randn(3, 8), torch.randn(3, 6)])
    with pytest.raises(ValueError, match="needs g_"):
        heads[1](torch.randn(3, 6))
    with pytest.raises(ValueError, match="first exit's ISC head takes no previous"):
        heads[0](torch.randn(3, 8), torch.randn(3, 5))


@pytest.mark.parametrize("isc_detach", [False, True])
def test_backward_collaboration_follows_isc_detach(isc_detach):
    torch.manual_seed(0)
    isc = InlineCollaboration([4, 4, 4], num_classes=3, isc_detach=isc_detach).train()
    features = [torch.randn(6, 4) for _ in range(3)]
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    g = isc(features)
    F.cross_entropy(g[2], y).backward()  # exit 3's loss only
    reached = {name.split(".")[1] for name, p in isc.named_parameters() if p.grad is not None
               and p.grad.abs().sum() > 0}
    # exit 3 always trains its own ISC module and linear (head index 2)
    assert "2" in reached
    assert reached == ({"2"} if isc_detach else {"0", "1", "2"})


def test_head_macs_formula():
    assert isc_head_macs([128, 128], 100) == [12_800, 12_800 + 256 + 25_600]
    assert isc_extra_macs([128, 128, 128], 100) == [0, 25_856, 25_856]


@pytest.mark.parametrize("isc_detach", [False, True])
def test_fvcore_counts_each_head_exactly(isc_detach, fvcore_macs):
    dims, C = [12, 7, 9], 5
    isc = InlineCollaboration(dims, C, isc_detach=isc_detach).eval()
    h = [torch.randn(1, c) for c in dims]
    counted = [fvcore_macs(isc.heads[0], h[0])]
    counted += [fvcore_macs(isc.heads[n], h[n], torch.randn(1, C)) for n in (1, 2)]
    assert counted == isc_head_macs(dims, C)


def test_ofa_loss_is_distillation_from_the_given_teacher():
    torch.manual_seed(0)
    g = [torch.randn(4, 10, requires_grad=True) for _ in range(3)]
    teacher = torch.randn(4, 10, requires_grad=True)
    y = torch.tensor([1, 2, 3, 4])
    got = ofa_loss(g, y, teacher, kd_temperature=3.0, kd_weight=0.9)
    # 'mean' reduction is the reference's default: KL / (B * C)
    expected = F.cross_entropy(g[2], y)
    for g_n in g[:2]:
        kl = F.kl_div(F.log_softmax(g_n / 3, 1), F.softmax(teacher / 3, 1), reduction="sum")
        expected = expected + 0.1 * F.cross_entropy(g_n, y) + 0.9 * 9 * kl / 40
    torch.testing.assert_close(got, expected)
    batchmean = ofa_loss(g, y, teacher, 3.0, 0.9, kd_reduction="batchmean")
    torch.testing.assert_close(batchmean, distillation_loss(g, y, teacher, 3.0, 0.9))
    got.backward()
    assert teacher.grad is None  # the frozen network's logits are never trained
