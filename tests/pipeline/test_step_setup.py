"""bench.pipeline.step_setup: the one setup of a stage's training step that the trainer and
bench speed share."""
import torch

import methods
from bench import backbones
from bench.backbones.common import parameters_per_exit
from bench.config import OptimizerConfig
from bench.engine import precision
from bench.pipeline.step_setup import make_optimizer, stage_context


def _context(method, stage_index, optimizer, **extra):
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=3)
    method.install(model)
    ctx = stage_context(model, method, parameters_per_exit(model), stage_index, optimizer,
                        scaler=precision.grad_scaler("fp32", "cpu"),
                        autocast=precision.autocast("fp32", "cpu"), device="cpu", **extra)
    return model, ctx


def test_the_optimizer_takes_the_configured_values():
    cfg = OptimizerConfig(name="sgd", lr=0.05, momentum=0.5, weight_decay=3e-4, nesterov=True)
    sgd = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    group = sgd.param_groups[0]
    assert isinstance(sgd, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.05, 0.5, 3e-4, True)


def test_a_stage_trains_only_its_parameters_and_steps():
    cfg = OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False)
    method = methods.create("sequential")  # stage 2 trains exit 2's group alone
    model, ctx = _context(method, 1, cfg)
    groups = parameters_per_exit(model)
    trained = {id(p) for g in ctx.optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in groups[1]}
    assert all(p.requires_grad == (id(p) in trained) for p in model.parameters())
    assert ctx.stage == method.stages(3)[1] and ctx.stage_index == 1 and ctx.net is model
    before = [p.detach().clone() for p in groups[1]]
    method.train_step(ctx, torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))
    assert all(not torch.equal(a, b) for a, b in zip(before, groups[1]))


def test_the_forward_is_wrapped_and_the_hooks_passed_on():
    cfg = OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False)
    checks = []
    wrapped = []

    def wrap(model):
        wrapped.append(model)
        return lambda x, num_exits=None: model(x, num_exits=num_exits)

    joint = methods.create("joint")
    model, ctx = _context(joint, 0, cfg, wrap=wrap,
                          check_finite=lambda loss, samples: checks.append(loss.item()))
    assert wrapped == [model] and ctx.net is not model and ctx.model is model
    joint.train_step(ctx, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    assert len(checks) == 1 and checks[0] > 0
