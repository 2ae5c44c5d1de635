"""CPU layout (bench/backbones/layout.py): the MSDNets' maps are channels_last on a CPU, with
PyTorch's own modules (batch norm run by its NCHW kernel), and the numbers are the NCHW
numbers up to rounding."""
import pytest
import torch

import methods
from bench import backbones
from bench.backbones import layout
from methods.lib.l2w import meta_step

torch.set_num_threads(1)


def _conv_inputs(model, x) -> list[bool]:
    """Per convolution run on ``x``: whether its input was channels_last (and not also
    NCHW-contiguous)."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, a: seen.append(
        a[0].is_contiguous(memory_format=torch.channels_last) and not a[0].is_contiguous()))
        for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_msdnet_feature_maps_are_channels_last_on_cpu_only_outside_plain_layout():
    model = backbones.create("msdnet_tiny", num_classes=3)
    seen = _conv_inputs(model, torch.randn(2, 3, 32, 32))
    assert seen and all(seen)
    with layout.plain_layout():
        seen = _conv_inputs(model, torch.randn(2, 3, 32, 32))
    assert seen and not any(seen)


def test_the_model_is_stock_pytorch():
    model = backbones.create("msdnet_tiny", num_classes=3)
    kinds = {type(m) for m in model.modules() if not list(m.children())}
    assert kinds <= {torch.nn.Conv2d, layout.BatchNorm2d, torch.nn.ReLU, torch.nn.AvgPool2d,
                     torch.nn.Flatten, torch.nn.Linear, torch.nn.Identity}, kinds
    # the batch norm adds no code of its own to the math: nn.BatchNorm2d's parameters,
    # buffers, state-dict keys and forward (the layout copies aside)
    assert layout.BatchNorm2d.__mro__[1] is torch.nn.BatchNorm2d
    assert set(vars(layout.BatchNorm2d)) - {"__module__", "__doc__", "__qualname__"} == {
        "forward"}


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_on_a_channels_last_map_is_the_nchw_kernel_s(train):
    # the NCHW kernel's result to the bit, handed back channels_last; PyTorch's own
    # channels_last kernel (float32 sums) differs in the last bits
    torch.manual_seed(0)
    x = torch.randn(8, 6, 16, 16) * 3 + 1
    ours, stock = layout.BatchNorm2d(6).train(train), torch.nn.BatchNorm2d(6).train(train)
    if not train:
        ours.running_mean.uniform_(-1, 1), ours.running_var.uniform_(0.5, 2)
        stock.load_state_dict(ours.state_dict())
    got = ours(x.contiguous(memory_format=torch.channels_last))
    want = stock(x)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    assert torch.equal(got, want)
    assert torch.equal(ours.running_mean, stock.running_mean)
    assert torch.equal(ours.running_var, stock.running_var)


def test_float64_inputs_keep_their_layout():
    # oneDNN (the reason for the layout) is float32 / bfloat16 only
    model = backbones.create("msdnet_tiny", num_classes=3).double()
    seen = _conv_inputs(model, torch.randn(2, 3, 32, 32, dtype=torch.float64))
    assert seen and not any(seen)
    assert layout.channels_last_input(torch.randn(2, 3, 4, 4)).is_contiguous(
        memory_format=torch.channels_last)


def _step(model, x, y):
    method = methods.create("boostnet")
    method.prepare(model)
    model.zero_grad()
    outs = model(x)
    method.loss(outs, y).backward()
    # (the last block's finer scales feed no head: no gradient, as in the reference)
    return [o.detach() for o in outs], [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                                        for p in model.parameters()]


def test_msdnet_training_step_equals_plain_layout_in_float64():
    # Same math: a channels_last float64 input runs every layer channels_last, and the two
    # layouts agree to ~1e-12 (float32 only adds rounding)
    torch.manual_seed(0)
    model = backbones.create("msdnet_tiny", num_classes=5).double()
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 4])
    assert all(_conv_inputs(model, x.contiguous(memory_format=torch.channels_last)))
    outs, grads = _step(model, x.contiguous(memory_format=torch.channels_last), y)
    with layout.plain_layout():
        outs_plain, grads_plain = _step(model, x, y)
    for a, b in zip(outs + grads, outs_plain + grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    # three training-mode forwards: the layout check, the step, the plain step
    assert buffers["blocks.0.0.layers.0.1.num_batches_tracked"].item() == 3


@pytest.mark.parametrize("train", [True, False])
def test_msdnet_float32_within_rounding_of_plain_layout(train):
    torch.manual_seed(0)
    model = backbones.create("msdnet_tiny", num_classes=5).train(train)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 4])
    outs, grads = _step(model, x, y)
    with layout.plain_layout():
        outs_plain, grads_plain = _step(model, x, y)
    for a, b in zip(outs + grads, outs_plain + grads_plain):
        # float32 rounding of sums over up to 4 * 32 * 32 terms, relative to the tensor
        assert (a - b).abs().max() <= 1e-4 * b.abs().max().clamp_min(1e-6)


def test_l2w_meta_step_runs_on_a_channels_last_msdnet():
    """The meta step (second-order, through torch.func.functional_call) on a CPU MSDNet,
    whose maps are channels_last: the gradient of a gradient through its batch norms."""
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
