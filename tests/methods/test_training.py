"""methods.training: what trains in a stage, the batch-norm policy of frozen parts, epochs
per stage, and the default training step the trainer and bench speed drive."""
import pytest
import torch
from torch import nn

import methods
from bench import backbones
from bench.backbones.common import parameters_per_exit
from methods import ExitHeads, Stage, StepContext, attach, plain_step, split_epochs

torch.set_num_threads(1)


class Extra(ExitHeads):
    def __init__(self, classes):
        super().__init__()
        self.link = nn.Linear(classes, classes, bias=False)

    def head(self, n, h, linear, previous):
        out = linear.original(h)
        return out if n == 0 else out + self.link(previous)


def model_with_modules():
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=4, image_size=8)
    attach(model, Extra(4))
    return model


@pytest.mark.parametrize("trains", ["all", "backbone", "method", "heads"])
def test_stage_parameters_follow_trains(trains):
    model = model_with_modules()
    groups = parameters_per_exit(model)
    stage = Stage((0, 1, 2), (1, 2), 1.0, trains=trains)
    trained = {id(p) for p in methods.stage_parameters(model, groups, stage)}
    own = {id(p) for p in methods.method_parameters(model)}
    in_groups = {id(p) for e in (1, 2) for p in groups[e]}
    final = {id(p) for m in model.modules() if isinstance(m, methods.ExitLinear)
             for p in m.parameters(recurse=False)}
    expected = {"all": in_groups, "backbone": in_groups - own, "method": in_groups & own,
                "heads": in_groups & (own | final)}
    assert trained == expected[trains] and trained
    assert all(p.requires_grad == (id(p) in trained) for p in model.parameters())


@pytest.mark.parametrize("policy,frozen_mode", [("eval", False), ("train", True)])
def test_frozen_batch_norm_policy(policy, frozen_mode):
    model = model_with_modules()
    groups = parameters_per_exit(model)
    methods.stage_parameters(model, groups, Stage((0, 1, 2), (0, 1, 2), 1.0, trains="method"))
    methods.train_mode(model, policy)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.training == frozen_mode for bn in bns)


def test_split_epochs_gives_every_stage_one_epoch_and_checks_shares():
    stages = [Stage((0,), (0,), 0.9), Stage((1,), (1,), 0.1)]
    assert split_epochs(2, stages) == [1, 1]  # 1.8/0.2 would round stage 2 to nothing
    assert split_epochs(10, stages) == [9, 1]
    with pytest.raises(ValueError, match="add up to 1"):
        split_epochs(4, [Stage((0,), (0,), 0.5), Stage((1,), (1,), 0.6)])
    with pytest.raises(ValueError, match="Stage.trains"):
        Stage((0,), (0,), 1.0, trains="everything")


def test_default_step_is_one_forward_the_stage_loss_one_backward_one_sgd_step():
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=4, image_size=8)
    reference = backbones.create("chain_tiny", num_classes=4, image_size=8)
    reference.load_state_dict(model.state_dict())
    method = methods.create("joint")
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    stage = Stage((0, 2), (0, 1, 2), 1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ctx = StepContext(model, model, opt, stage, 0, step=plain_step(opt))
    sample = method.train_step(ctx, x, y)
    assert sample.shape == (3, 6) and not sample.requires_grad

    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    outs = reference(x, num_exits=3)
    loss = sum(nn.functional.cross_entropy(outs[n], y) for n in (0, 2))
    ref_opt.zero_grad()
    loss.backward()
    ref_opt.step()
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert method.passes(stage).as_dict() == {"forward": 1.0, "backward": 1.0,
                                              "second_order": 0.0, "optimizer_steps": 1,
                                              "backward_through": "model"}
