"""l2w (methods/l2w.py; this file's name keeps clear of lib/test_l2w.py): the method's
step is the reference's loop (meta step then real step on each half), the meta gradient
reaches the weight network only, its state resumes exactly, and the weight network adds
nothing at inference."""
import copy

import pytest
import torch
from torch import nn

import methods
from bench import backbones, flops
from methods import Stage, StepContext, plain_step
from methods.lib.l2w import exit_weights, meta_step, weighted_loss_for_step


def tiny_model():
    torch.manual_seed(0)
    return backbones.create("chain_tiny", num_classes=4, image_size=8)


def context(model, optimizer):
    every = tuple(range(model.num_exits))
    return StepContext(model, model, optimizer, Stage(every, every, 1.0), 0,
                       step=plain_step(optimizer))


def test_defaults_are_the_reference_cifar_command():
    assert methods.defaults("l2w") == {
        "hidden": 500, "layers": 1, "epsilon": 0.8, "centring": "col", "input_type": "loss",
        "meta_lr": 1e-4, "meta_weight_decay": 1e-4, "meta_interval": 1, "target_q": 0.75,
        "loss_weights": None}
    with pytest.raises(methods.OptionError, match="centring: expected one of col, row, mat"):
        methods.create("l2w", centring="rows")


def test_weight_network_shape_and_centred_weights():
    method = methods.create("l2w", hidden=7, layers=2)
    model = tiny_model()
    method.begin_training(model, torch.device("cpu"))
    linears = [m for m in method.wpn.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 7), (7, 7), (7, 3)]
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    w = exit_weights(method.wpn(method.wpn.features(model(x), y)), 0.8, "col")
    torch.testing.assert_close(w.mean(dim=1), torch.ones(6))  # 'col': mean 1 per sample


def test_a_step_is_meta_then_real_on_each_half_as_the_reference():
    x, y = torch.randn(8, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    model, twin = tiny_model(), tiny_model()
    method = methods.create("l2w", hidden=16, meta_lr=1e-2, loss_weights=[1.0, 0.5, 2.0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    method.begin_training(model, torch.device("cpu"))
    wpn = copy.deepcopy(method.wpn)
    wpn_opt = torch.optim.Adam(wpn.parameters(), lr=1e-2, weight_decay=1e-4)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train(), twin.train()

    rows = method.train_step(context(model, opt), x, y)

    scale = torch.tensor([1.0, 0.5, 2.0])
    halves = [(x[:4], y[:4]), (x[4:], y[4:])]
    for (x_t, y_t), (x_m, y_m) in (halves, halves[::-1]):
        meta_step(twin, wpn, wpn_opt, twin_opt, x_t, y_t, x_m, y_m, epsilon=0.8,
                  centring="col", q=0.75, exit_scale=scale)
        loss = weighted_loss_for_step(wpn, twin(x_t), y_t, 0.8, "col", exit_scale=scale)
        twin_opt.zero_grad(set_to_none=True)
        loss.backward()
        twin_opt.step()
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    for a, b in zip(method.wpn.state_dict().values(), wpn.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert rows.shape == (3, 8) and method.half_steps == 2


def test_the_meta_gradient_reaches_the_weight_network_and_nothing_else(monkeypatch):
    model = tiny_model()
    method = methods.create("l2w", hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    method.begin_training(model, torch.device("cpu"))
    ctx = context(model, opt)
    ctx.step = lambda loss: None  # no real step: only the meta step may change anything
    wpn_before = copy.deepcopy(method.wpn.state_dict())
    model_before = {k: p.detach().clone() for k, p in model.named_parameters()}
    method.train_step(ctx, torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1]))
    assert all(torch.equal(model_before[k], p) for k, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(wpn_before[k], v) for k, v in method.wpn.state_dict().items())
    assert not opt.state  # the lookahead read the SGD state, never wrote it


def test_meta_interval_and_declared_passes(monkeypatch):
    calls = []
    monkeypatch.setattr(methods.create("l2w").__class__, "_meta_step",
                        lambda self, ctx, *halves: calls.append(self.half_steps))
    model = tiny_model()
    method = methods.create("l2w", hidden=8, meta_interval=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    method.begin_training(model, torch.device("cpu"))
    for _ in range(3):
        method.train_step(context(model, opt), torch.randn(4, 3, 8, 8),
                          torch.tensor([0, 1, 2, 3]))
    assert calls == [0, 3]
    assert method.passes(Stage((0,), (0,), 1.0)).as_dict() == {
        "forward": 1 + 2 / 3, "backward": 1 + 2 / 3, "second_order": 1 / 3,
        "optimizer_steps": 2, "backward_through": "model"}
    with pytest.raises(ValueError, match="at least 2 images"):
        method.train_step(context(model, opt), torch.randn(1, 3, 8, 8), torch.tensor([0]))


def test_no_parameters_or_macs_at_inference():
    joint, l2w = tiny_model(), tiny_model()
    methods.create("l2w").install(l2w)
    assert not methods.has_modules(l2w)
    assert flops.per_exit(l2w) == flops.per_exit(joint)
    assert methods.create("l2w").analytic_macs(3, 4) == [0, 0, 0]


def test_a_resumed_run_equals_an_uninterrupted_one(make_trainer, tmp_path, same_state):
    straight = make_trainer(tmp_path / "a", "l2w", epochs=3, hidden=16)
    straight.fit()
    interrupted = make_trainer(tmp_path / "b", "l2w", epochs=3, hidden=16)

    def stop(info):
        if info["epoch"] == 1:
            raise KeyboardInterrupt

    interrupted.on_epoch = stop
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = make_trainer(tmp_path / "b", "l2w", epochs=3, hidden=16)
    resumed.fit()
    assert same_state(straight.model.state_dict(), resumed.model.state_dict())
    assert same_state(straight.method.wpn.state_dict(), resumed.method.wpn.state_dict())
    assert straight.method.half_steps == resumed.method.half_steps == 3 * 2 * 3


def test_meta_gradients_go_through_the_contexts_all_reduce():
    """Under DDP the trainer's all_reduce_mean averages them over ranks (autograd.grad
    bypasses DDP's hooks); here a recorder stands in and halves them."""
    model = tiny_model()
    method = methods.create("l2w", hidden=8, meta_lr=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    method.begin_training(model, torch.device("cpu"))
    seen = []

    def halve(grads):
        seen.append([g.clone() for g in grads])
        for g in grads:
            g /= 2

    ctx = context(model, opt)
    ctx.all_reduce_mean = halve
    method.train_step(ctx, torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert len(seen) == 2  # one meta step per half
    assert [g.shape for g in seen[0]] == [p.shape for p in method.wpn.parameters()]
    # the gradient Adam stepped with is the reduced one (Adam keeps it in .grad)
    for p, g in zip(method.wpn.parameters(), seen[1]):
        torch.testing.assert_close(p.grad, g / 2)
