import math

import pytest
import torch
import torch.nn.functional as F

from methods.lib.ensemble import GeometricEnsembles, ensemble_macs, fit_ensembles


def log_softmax_list(z):
    lse = math.log(sum(math.exp(v) for v in z))
    return [v - lse for v in z]


def test_formula_by_hand():
    ens = GeometricEnsembles(2, 3).double()
    with torch.no_grad():
        ens.weights[1].copy_(torch.tensor([0.0, math.log(3.0)], dtype=torch.float64))
        ens.biases[1].copy_(torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64))
        ens.weights[0].fill_(math.log(2.0))
    f1, f2 = [0.0, 1.0, 2.0], [3.0, -1.0, 0.5]
    z1, z2 = ens([torch.tensor([f1], dtype=torch.float64),
                  torch.tensor([f2], dtype=torch.float64)])
    lp1, lp2 = log_softmax_list(f1), log_softmax_list(f2)
    # z_1 = exp(w_11) lp1 / 1 + 0;  z_2 = (exp(0) lp1 + exp(log 3) lp2) / 2 + b_2
    torch.testing.assert_close(z1[0], torch.tensor([2 * v for v in lp1], dtype=torch.float64))
    expected = [(a + 3 * b) / 2 + c for a, b, c in zip(lp1, lp2, [1.0, 0.0, -1.0])]
    torch.testing.assert_close(z2[0], torch.tensor(expected, dtype=torch.float64))


def test_init_and_all_exits_at_once_agree_with_per_exit():
    g = torch.Generator().manual_seed(3)
    ens = GeometricEnsembles(4, 5, generator=g)
    assert [tuple(w.shape) for w in ens.weights] == [(1,), (2,), (3,), (4,)]
    assert all(torch.equal(b, torch.zeros(5)) for b in ens.biases)
    draws = torch.cat([w.detach() for w in ens.weights])
    assert draws.abs().max() < 0.05 and 0.003 < draws.std() < 0.03  # N(0, 0.01^2)
    outs = [torch.randn(6, 5) for _ in range(4)]
    per_exit = torch.stack(ens(outs), dim=1)
    at_once = ens.all_exit_logits(torch.stack([F.log_softmax(f, 1) for f in outs], dim=1))
    torch.testing.assert_close(at_once, per_exit)
    assert len(ens(outs[:2])) == 2  # early exit: ensembles 1..k only
    with pytest.raises(ValueError, match="4 ensembles cannot combine 5 exits"):
        ens(outs + outs[:1])


def test_macs_analytic_and_fvcore(fvcore_macs):
    assert ensemble_macs(3, 100) == [100, 200, 300]
    ens = GeometricEnsembles(3, 7).eval()
    outs = tuple(torch.randn(1, 7) for _ in range(3))

    class UpTo(torch.nn.Module):  # fvcore traces a module with tensor arguments
        def __init__(self, k):
            super().__init__()
            self.ens, self.k = ens, k

        def forward(self, *f):
            return tuple(self.ens(list(f[: self.k])))

    elementwise = ("aten::log_softmax", "aten::exp", "aten::div", "aten::add")
    cumulative = [fvcore_macs(UpTo(k), *outs, zero_cost=elementwise) for k in (1, 2, 3)]
    assert cumulative == [7, 7 + 14, 7 + 14 + 21]


def toy_logits(M=600, N=3, C=4, seed=0):
    """Exit 2 is perfect (a margin of 4 on the label), exits 1 and 3 are noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (M,), generator=g)
    logits = torch.randn(N, M, C, generator=g)
    logits[1] = 4.0 * F.one_hot(y, C)
    return logits, y


def test_fit_raises_the_weight_of_the_perfect_exit():
    logits, y = toy_logits()
    ens = fit_ensembles(logits, y, epochs=30, batch_size=64, lr=0.05, seed=0)
    w3 = ens.weights[2].detach()
    assert w3[1] > w3[0] + 0.5 and w3[1] > w3[2] + 0.5
    w2 = ens.weights[1].detach()
    assert w2[1] > w2[0] + 0.5
    z = ens(list(logits))
    acc = [(zn.argmax(1) == y).float().mean().item() for zn in z]
    assert acc[1] == acc[2] == 1.0 and acc[0] < 0.5


def test_fit_is_deterministic_and_per_exit_independent():
    logits, y = toy_logits(M=200)
    a = fit_ensembles(logits, y, epochs=3, batch_size=32, seed=7)
    b = fit_ensembles(logits, y, epochs=3, batch_size=32, seed=7)
    c = fit_ensembles(logits, y, epochs=3, batch_size=32, seed=8)
    state_a, state_b, state_c = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not torch.equal(state_a["weights.2"], state_c["weights.2"])
    # exits 1 and 2 fitted alone (as the reference's one-process-per-exit) get the same fit
    alone = fit_ensembles(logits[:2], y, epochs=3, batch_size=32, seed=7)
    for n in (0, 1):
        torch.testing.assert_close(alone.weights[n], a.weights[n], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(alone.biases[n], a.biases[n], rtol=1e-5, atol=1e-7)


def test_fit_errors_name_the_problem():
    logits, y = toy_logits(M=10)
    with pytest.raises(ValueError, match=r"\[exits, samples, classes\], got shape \(10, 4\)"):
        fit_ensembles(logits[0], y, epochs=1)
    with pytest.raises(ValueError, match=r"shape \(10,\) to match the logits, got \(9,\)"):
        fit_ensembles(logits, y[:9], epochs=1)
    with pytest.raises(ValueError, match="epochs >= 1 and batch_size >= 1, got epochs=0"):
        fit_ensembles(logits, y, epochs=0)
