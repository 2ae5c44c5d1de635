import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.lib.l2w import (WeightNet, exit_weights, meta_loss, meta_step, sample_losses,
                             sgd_lookahead, target_exits, target_probabilities, weighted_loss,
                             weighted_loss_for_step)


class TwoExits(nn.Module):
    """A tiny early-exit net: a trunk with batch norm, then two exits."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.exit1 = nn.Linear(4, 3)
        self.block2 = nn.Linear(4, 4)
        self.exit2 = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.trunk(x)))
        return [self.exit1(h), self.exit2(torch.relu(self.block2(h)))]


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g), torch.randint(0, 3, (n,), generator=g)


def trained_sgd(model, **hyper):
    """An SGD optimizer after one real step, so that momentum buffers exist."""
    opt = torch.optim.SGD(model.parameters(), **hyper)
    x, y = batch(seed=1)
    sum(F.cross_entropy(f, y) for f in model(x)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return opt


# ---- the weight network ---------------------------------------------------------------

def test_weight_net_shapes_and_layers():
    wpn = WeightNet(5, hidden=7, layers=3)
    linears = [m for m in wpn.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 7), (7, 7), (7, 5)]
    assert isinstance(wpn.mlp[-1], nn.Tanh)
    v = wpn(torch.randn(4, 5) * 100)
    assert v.shape == (4, 5) and v.abs().max() <= 1
    assert sum(p.numel() for p in WeightNet(5).parameters()) == 5_505  # (N+1)H + (H+1)N
    assert WeightNet(5, input_type="both").mlp[0].in_features == 10
    with pytest.raises(ValueError, match="input type 'logits' is not one of loss, conf, both"):
        WeightNet(5, input_type="logits")


def test_features_are_detached_losses_or_confidences():
    outs = [torch.randn(4, 3, requires_grad=True) for _ in range(2)]
    y = torch.tensor([0, 1, 2, 0])
    losses = WeightNet(2).features(outs, y)
    assert not losses.requires_grad
    torch.testing.assert_close(losses[:, 1], F.cross_entropy(outs[1], y, reduction="none"))
    both = WeightNet(2, input_type="both").features(outs, y)
    assert both.shape == (4, 4)
    torch.testing.assert_close(both[:, 2], F.softmax(outs[0], 1).max(1).values)


def test_centring_by_hand():
    v = torch.tensor([[0.5, -0.5, 0.0], [1.0, 1.0, -0.5]])
    col = exit_weights(v, 0.8, "col")
    torch.testing.assert_close(col, 1 + 0.8 * torch.tensor([[0.5, -0.5, 0.0],
                                                           [0.5, 0.5, -1.0]]))
    torch.testing.assert_close(col.mean(1), torch.ones(2))
    row = exit_weights(v, 0.5, "row")
    torch.testing.assert_close(row, 1 + 0.5 * torch.tensor([[-0.25, -0.75, 0.25],
                                                           [0.25, 0.75, -0.25]]))
    mat = exit_weights(v, 0.3, "mat")  # mean of v is 0.25
    torch.testing.assert_close(mat, 1 + 0.3 * (v - 0.25))
    torch.testing.assert_close(mat.mean(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="centring 'rows' is not one of col, row, mat"):
        exit_weights(v, 0.8, "rows")


def test_weighted_loss_by_hand():
    losses = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    w = torch.tensor([[0.5, 1.5], [1.0, 0.0]])
    # exit 1: mean(0.5, 3) = 1.75; exit 2: mean(3, 0) = 1.5
    assert weighted_loss(losses, w).item() == 3.25


def test_loss_for_the_real_step_has_no_graph_to_phi():
    wpn = WeightNet(2, hidden=3)
    outs = [torch.randn(4, 3, requires_grad=True) for _ in range(2)]
    y = torch.tensor([0, 1, 2, 0])
    loss = weighted_loss_for_step(wpn, outs, y, epsilon=0.5)
    loss.backward()
    assert all(p.grad is None for p in wpn.parameters())
    with torch.no_grad():
        w = exit_weights(wpn(sample_losses(outs, y)), 0.5, "col")
    torch.testing.assert_close(loss, weighted_loss(sample_losses(outs, y), w))


# ---- target exits and the meta loss -----------------------------------------------------

def test_target_probabilities():
    assert target_probabilities(3, 1.0) == pytest.approx([1 / 3] * 3)
    assert target_probabilities(3, 0.5) == pytest.approx([4 / 7, 2 / 7, 1 / 7])


def test_target_exits_by_hand():
    conf = torch.tensor([
        # exit1 exit2 exit3
        [0.90, 0.99, 0.1],  # 0: most confident at exit 1 -> exit 1 (although best at 2)
        [0.10, 0.95, 0.1],  # 1: exit 2
        [0.80, 0.20, 0.9],  # 2: exit 1
        [0.20, 0.30, 0.1],  # 3: exit 3
        [0.30, 0.90, 0.1],  # 4: exit 2
        [0.70, 0.10, 0.1],  # 5: third at exit 1, not taken; low at exit 2 -> exit 3
        [0.05, 0.50, 0.1],  # 6: exit 3 (exit 2 is full)
        [0.15, 0.40, 0.1],  # 7: exit 3
    ])
    # q = 1: P = 1/3 each, floor(8/3) = 2 for exits 1 and 2, the last takes the other 4
    assert target_exits(conf, 1.0).tolist() == [0, 1, 0, 2, 1, 2, 2, 2]
    # q = 0.5: P = 4/7, 2/7, 1/7 -> floor(4.57) = 4, floor(2.29) = 2, the rest 2
    assert target_exits(conf, 0.5).tolist() == [0, 1, 0, 2, 0, 0, 1, 2]


def test_meta_loss_by_hand():
    outs = [torch.tensor([[4.0, 0.0], [0.0, 0.1]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]])]
    y = torch.tensor([0, 1])
    # q = 1, B = 2, N = 2: exit 1 takes floor(2 * 1/2) = 1 sample, the most confident (0)
    expected = (F.cross_entropy(outs[0][:1], y[:1]) + F.cross_entropy(outs[1][1:], y[1:]))
    torch.testing.assert_close(meta_loss(outs, y, q=1.0), expected)


# ---- the lookahead ------------------------------------------------------------------------

@pytest.mark.parametrize("hyper", [
    dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True),
    dict(lr=0.2, momentum=0.5, weight_decay=0.0, dampening=0.3),
    dict(lr=0.1),
])
def test_lookahead_equals_a_hand_written_sgd_step(hyper):
    torch.manual_seed(0)
    model = TwoExits()
    opt = trained_sgd(model, **hyper)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: torch.randn_like(p) for n, p in params.items()}
    buffers_before = {p: s["momentum_buffer"].clone() for p, s in opt.state.items()
                      if s.get("momentum_buffer") is not None}
    stepped = sgd_lookahead(model, opt, params, grads)

    mu, wd = hyper.get("momentum", 0.0), hyper.get("weight_decay", 0.0)
    damp, nesterov = hyper.get("dampening", 0.0), hyper.get("nesterov", False)
    for name, live in model.named_parameters():
        d = grads[name] + wd * params[name]
        if mu:
            b = mu * opt.state[live]["momentum_buffer"] + (1 - damp) * d
            d = d + mu * b if nesterov else b
        torch.testing.assert_close(stepped[name], params[name] - hyper["lr"] * d,
                                   rtol=0, atol=1e-6)
    # and torch's own SGD, given the same gradients, lands on the same parameters
    twin = copy.deepcopy(model)
    twin_opt = torch.optim.SGD(twin.parameters(), **hyper)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict shares tensors
    for name, p in twin.named_parameters():
        p.grad = grads[name]
    twin_opt.step()
    for name, p in twin.named_parameters():
        torch.testing.assert_close(stepped[name], p.detach(), rtol=0, atol=1e-6)
    # the lookahead only read the optimizer and the model
    for p, buf in buffers_before.items():
        assert torch.equal(opt.state[p]["momentum_buffer"], buf)
    assert all(torch.equal(p.detach(), params[n]) for n, p in model.named_parameters())


def test_lookahead_first_step_and_frozen_or_gradient_free_parameters():
    model = TwoExits()
    model.exit1.bias.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5,
                          momentum=0.9, weight_decay=0.1)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: torch.ones_like(p) for n, p in params.items()}
    grads["exit2.bias"] = None  # no gradient: SGD leaves it alone
    stepped = sgd_lookahead(model, opt, params, grads)
    # no momentum buffer yet: b = g + wd theta
    torch.testing.assert_close(stepped["trunk.weight"],
                               params["trunk.weight"] - 0.5 * (1 + 0.1 * params["trunk.weight"]))
    assert stepped["exit1.bias"] is params["exit1.bias"]  # not in the optimizer
    assert stepped["exit2.bias"] is params["exit2.bias"]
    with pytest.raises(ValueError, match="maximize=True"):
        sgd_lookahead(model, torch.optim.SGD(model.parameters(), lr=0.1, maximize=True),
                      params, grads)


# ---- the meta step ------------------------------------------------------------------------

def hand_meta_gradient(model, wpn, opt, xt, yt, xm, ym, eps, q):
    """The reference's recipe written out: a copy of theta, the weighted loss, its gradient
    with a graph, SGD-with-momentum-and-wd by hand, the meta loss, d/dphi."""
    group = opt.param_groups[0]
    lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
    theta = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    outs = torch.func.functional_call(model, {**theta, **buffers}, (xt,))
    losses = torch.stack([F.cross_entropy(f, yt, reduction="none") for f in outs], 1)
    v = wpn(losses.detach())
    w = 1 + eps * (v - v.mean(1, keepdim=True))
    loss = (w * losses).mean(0).sum()
    g = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
    new = {}
    for (n, t), gn, live in zip(theta.items(), g, model.parameters()):
        new[n] = t - lr * (mu * opt.state[live]["momentum_buffer"] + gn + wd * t)
    meta_outs = torch.func.functional_call(model, {**new, **buffers}, (xm,))
    return torch.autograd.grad(meta_loss(meta_outs, ym, q), list(wpn.parameters()))


def test_meta_gradient_reaches_the_wpn_and_nothing_else():
    torch.manual_seed(0)
    model = TwoExits().train()
    opt = trained_sgd(model, lr=0.1, momentum=0.9, weight_decay=1e-4)
    wpn = WeightNet(2, hidden=6)
    wpn_opt = torch.optim.Adam(wpn.parameters(), lr=1e-3)
    (xt, yt), (xm, ym) = batch(seed=2), batch(seed=3)
    expected = hand_meta_gradient(model, wpn, opt, xt, yt, xm, ym, eps=0.8, q=0.75)

    theta_before = copy.deepcopy(model.state_dict())  # parameters and BN statistics
    sgd_before = copy.deepcopy(opt.state_dict())
    phi_before = [p.detach().clone() for p in wpn.parameters()]
    got = meta_step(model, wpn, wpn_opt, opt, xt, yt, xm, ym, epsilon=0.8, q=0.75)

    assert got.ndim == 0 and not got.requires_grad and got > 0
    for p, g in zip(wpn.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-8)
    assert sum(float(g.abs().sum()) for g in expected) > 0
    assert all(not torch.equal(p.detach(), b) for p, b in zip(wpn.parameters(), phi_before))
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, theta_before[k]) for k, v in model.state_dict().items())
    after = opt.state_dict()
    assert all(torch.equal(after["state"][i]["momentum_buffer"], s["momentum_buffer"])
               for i, s in sgd_before["state"].items())


def test_meta_step_trains_the_wpn_towards_a_lower_meta_loss():
    # Repeated meta steps at a fixed theta: the meta loss at theta' must fall, since phi is
    # the only thing that changes. A small deterministic check of the sign of the update.
    torch.manual_seed(0)
    model = TwoExits().train()
    opt = trained_sgd(model, lr=0.5, momentum=0.9, weight_decay=1e-4)
    wpn = WeightNet(2, hidden=16)
    wpn_opt = torch.optim.Adam(wpn.parameters(), lr=1e-2)
    (xt, yt), (xm, ym) = batch(32, seed=4), batch(32, seed=5)
    losses = [meta_step(model, wpn, wpn_opt, opt, xt, yt, xm, ym, epsilon=0.8).item()
              for _ in range(15)]
    assert losses[-1] < losses[0]


class AttentionExits(nn.Module):
    """Two exits over one self-attention (5 tokens of width 4): torch's fused kernel, as
    timm's ViTs call it, or the same function written out (``fused`` False)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 20)
        self.qkv = nn.Linear(4, 12)
        self.exit1 = nn.Linear(4, 3)
        self.exit2 = nn.Linear(4, 3)
        self.fused = True

    def forward(self, x):
        tokens = self.embed(x).view(-1, 5, 4)  # [B, 5, 4]
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        if self.fused:
            mixed = F.scaled_dot_product_attention(q, k, v)
        else:
            mixed = torch.softmax(q @ k.transpose(1, 2) / 2.0, dim=-1) @ v  # sqrt(4) = 2
        return [self.exit1(tokens[:, 0]), self.exit2((tokens + mixed)[:, 0])]


def test_meta_step_differentiates_twice_through_fused_attention():
    # The fused kernels have no second derivative; meta_step runs attention on torch's math
    # kernel, which computes the same function: phi's gradient equals the hand recipe's on
    # the written-out attention.
    torch.manual_seed(0)
    model = AttentionExits().train()
    opt = trained_sgd(model, lr=0.1, momentum=0.9, weight_decay=1e-4)
    wpn = WeightNet(2, hidden=6)
    (xt, yt), (xm, ym) = batch(seed=2), batch(seed=3)
    model.fused = False
    expected = hand_meta_gradient(model, wpn, opt, xt, yt, xm, ym, eps=0.8, q=0.75)
    model.fused = True
    meta_step(model, wpn, torch.optim.Adam(wpn.parameters(), lr=1e-3), opt, xt, yt, xm, ym,
              epsilon=0.8, q=0.75)
    assert sum(float(g.abs().sum()) for g in expected) > 0
    for p, g in zip(wpn.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)
