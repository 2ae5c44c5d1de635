"""CPU layout: channels_last convolutions with exact training-mode batch statistics.

The batch-norm tests run twice: with the compiled kernel (bench/backbones/native.py) and with
the PyTorch-op version used where no C compiler is (``native.disabled()``)."""
import contextlib

import pytest
import torch

import methods
from bench import backbones
from bench.backbones import layout, native
from methods.lib.l2w import meta_step

torch.set_num_threads(1)

SHAPES = [(8, 6, 32, 32), (8, 12, 16, 16), (5, 48, 8, 8), (8, 128, 2, 2), (3, 5, 7, 7),
          (2, 200, 3, 5)]


@pytest.fixture(params=["compiled kernel", "pytorch ops"])
def batch_norm_version(request):
    """Runs a test with each batch-norm implementation of the channels_last path."""
    if request.param == "compiled kernel" and native.kernel() is None:
        pytest.skip("no C compiler here: the compiled batch norm is unavailable")
    with (contextlib.nullcontext() if request.param == "compiled kernel"
          else native.disabled()):
        yield request.param


def _bn_pair(c, momentum=0.1):
    torch.manual_seed(1)
    ours = layout.BatchNorm2d(c, momentum=momentum)
    ours.weight.data.uniform_(0.5, 1.5)
    ours.bias.data.normal_()
    plain = torch.nn.BatchNorm2d(c, momentum=momentum)
    plain.load_state_dict(ours.state_dict())
    return ours, plain


def _run(bn, x, g):
    x = x.clone().requires_grad_()
    y = bn(x)
    y.backward(g)
    return [y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean,
            bn.running_var]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_train_batch_norm_on_channels_last_matches_nchw_kernel(shape, momentum,
                                                              batch_norm_version):
    x = torch.randn(*shape) * 3 + 1
    g = torch.randn(*shape)
    ours, plain = _bn_pair(shape[1], momentum)
    for _ in range(2):  # two steps: the running statistics accumulate
        got = _run(ours, x.contiguous(memory_format=torch.channels_last),
                   g.contiguous(memory_format=torch.channels_last))
        want = _run(plain, x, g)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(got, want):  # float rounding of sums over N*H*W terms
        assert (a - b).abs().max() <= 2e-6 * b.abs().max()
    assert ours.num_batches_tracked.item() == plain.num_batches_tracked.item() == 2


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_batch_statistics_as_accurate_as_the_nchw_kernel(shape, batch_norm_version):
    # PyTorch's own channels_last kernel is ~10x further from float64 here (module doc)
    x = torch.randn(*shape) * 3 + 1
    g = torch.randn(*shape)
    ours, plain = _bn_pair(shape[1])
    exact, _ = _bn_pair(shape[1])
    got = _run(ours, x.contiguous(memory_format=torch.channels_last),
               g.contiguous(memory_format=torch.channels_last))
    nchw = _run(plain, x, g)
    ref = _run(exact.double(), x.double(), g.double())
    for a, b, r in zip(got[:4], nchw[:4], ref[:4]):
        err_ours = ((a.double() - r).abs().max() / r.abs().max()).item()
        err_nchw = ((b.double() - r).abs().max() / r.abs().max()).item()
        assert err_ours < max(3 * err_nchw, 3e-7)


def test_other_cases_are_plain_batch_norm():
    x = torch.randn(4, 6, 8, 8)
    ours, plain = _bn_pair(6)
    assert list(ours.state_dict()) == list(plain.state_dict())
    assert torch.equal(ours(x), plain(x))  # NCHW input
    ours.eval(), plain.eval()
    xc = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(ours(xc), plain(xc))  # eval mode: elementwise, PyTorch's kernel
    with pytest.raises(ValueError, match="more than 1 value"):
        ours.train()(torch.randn(1, 6, 1, 1).contiguous(memory_format=torch.channels_last))


def test_msdnet_feature_maps_are_channels_last_on_cpu_only_outside_plain_layout():
    model = backbones.create("msdnet_tiny", num_classes=3)
    seen = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_pre_hook(lambda mod, a: seen.append(
                a[0].is_contiguous(memory_format=torch.channels_last)
                and not a[0].is_contiguous()))
    model(torch.randn(2, 3, 32, 32))
    assert seen and all(seen)
    seen.clear()
    with layout.plain_layout():
        model(torch.randn(2, 3, 32, 32))
    assert seen and not any(seen)


def _step(model, x, y):
    method = methods.create("boostnet")
    method.prepare(model)
    model.zero_grad()
    outs = model(x)
    method.loss(outs, y).backward()
    # (the last block's finer scales feed no head: no gradient, as in the reference)
    return [o.detach() for o in outs], [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                                        for p in model.parameters()]


def test_msdnet_training_step_equals_plain_layout_in_float64(batch_norm_version):
    # Same math: in float64 the two layouts agree to ~1e-12 (float32 only adds rounding)
    torch.manual_seed(0)
    model = backbones.create("msdnet_tiny", num_classes=5).double()
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 4])
    outs, grads = _step(model, x, y)
    with layout.plain_layout():
        outs_plain, grads_plain = _step(model, x, y)
    for a, b in zip(outs + grads, outs_plain + grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    assert buffers["blocks.0.0.layers.0.1.num_batches_tracked"].item() == 2


def test_msdnet_logits_float32_within_rounding_of_plain_layout(batch_norm_version):
    torch.manual_seed(0)
    model = backbones.create("msdnet_tiny", num_classes=5)
    x = torch.randn(4, 3, 32, 32)
    for mode in (model.train, model.eval):
        mode()
        with torch.no_grad():
            got = model(x)
            with layout.plain_layout():
                want = model(x)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_second_order_gradients_match_plain_batch_norm(batch_norm_version):
    """L2W's lookahead differentiates a gradient (create_graph): the channels_last batch
    norm's backward must itself be differentiable, and give PyTorch's numbers."""
    torch.manual_seed(0)
    ours = layout.BatchNorm2d(3).double()
    plain = torch.nn.BatchNorm2d(3).double()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(4, 3, 5, 6, dtype=torch.double)
    x_cl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradgradcheck(ours, (x_cl,))

    def curvature(bn, inp):
        g = torch.autograd.grad((bn(inp) ** 3).sum(), inp, create_graph=True)[0]
        return torch.autograd.grad(g.pow(2).sum(), (inp, bn.weight, bn.bias))

    for a, b in zip(curvature(ours, x_cl), curvature(plain, x.clone().requires_grad_())):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_l2w_meta_step_runs_on_a_channels_last_msdnet(batch_norm_version):
    """The meta step (second-order, through torch.func.functional_call) on a CPU MSDNet,
    whose batch norms take the channels_last path: it failed with 'functions with out=...
    arguments don't support automatic differentiation' before the backward had a
    differentiable form."""
    torch.manual_seed(0)
    model = backbones.create("msdnet_tiny", num_classes=10)
    method = methods.create("l2w")
    method.install(model)
    method.begin_training(model, torch.device("cpu"))
    wpn_before = [p.detach().clone() for p in method.wpn.parameters()]
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    loss = meta_step(model, method.wpn, method.wpn_optimizer, sgd, x[:4], y[:4], x[4:], y[4:])
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(wpn_before, method.wpn.parameters()))
