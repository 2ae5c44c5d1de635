import pytest
import torch
import torch.nn.functional as F

import methods
from bench import backbones
from methods import Stage, split_epochs


def leaf_outs(values):
    return [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]


def test_registry_names_and_errors():
    assert {"joint", "sequential", "boostnet", "kd"} <= set(methods.names())
    with pytest.raises(KeyError, match="registered: " + ", ".join(methods.names())):
        methods.create("adaboost")
    with pytest.raises(ValueError, match="no option 'temp'.*temperature"):
        methods.create("boostnet", temp=0.5)


def test_defaults_follow_the_paper():
    b = methods.create("boostnet")
    assert (b.temperature, b.grad_rescale, b.joint) == (0.5, True, True)
    s = methods.create("sequential")
    assert (s.temperature, s.grad_rescale, s.joint) == (1.0, False, False)


def test_joint_combine_is_identity():
    outs = leaf_outs([[[1.0, 2.0]], [[3.0, 4.0]]])
    assert [o.tolist() for o in methods.create("joint").combine(outs)] == [[[1, 2]], [[3, 4]]]


def test_boostnet_combine_by_hand():
    # F_1 = f_1, F_2 = 0.5 F_1 + f_2, F_3 = 0.5 F_2 + f_3
    outs = leaf_outs([[[2.0, 0.0]], [[0.0, 4.0]], [[1.0, 1.0]]])
    got = methods.create("boostnet", temperature=0.5).combine(outs)
    assert [g.tolist() for g in got] == [[[2, 0]], [[1, 4]], [[1.5, 3.0]]]


def test_per_exit_temperature_lists():
    outs = leaf_outs([[[2.0]], [[1.0]], [[1.0]]])
    full = methods.create("boostnet", temperature=[9.0, 0.5, 0.25]).combine(outs)
    short = methods.create("boostnet", temperature=[0.5, 0.25]).combine(outs)
    # F_2 = 0.5*2 + 1 = 2, F_3 = 0.25*2 + 1 = 1.5; t_1 never matters.
    assert [f.item() for f in full] == [f.item() for f in short] == [2.0, 2.0, 1.5]
    with pytest.raises(ValueError, match="temperature has 4 values.*3 exits"):
        methods.create("boostnet", temperature=[1, 1, 1, 1]).combine(outs)


def expected_grad(logits, y, weight):
    onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    return weight * (torch.softmax(logits, dim=1) - onehot) / logits.shape[0]


@pytest.mark.parametrize("name", ["boostnet", "sequential"])
def test_boosted_gradient_reaches_only_its_own_head(name):
    torch.manual_seed(1)
    outs = [torch.randn(4, 5, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    y = torch.tensor([0, 3, 1, 4])
    w = [1.0, 2.0, 0.5]
    method = methods.create(name, temperature=0.7, loss_weights=w)
    method.loss(outs, y).backward()
    ensemble = method.combine([o.detach() for o in outs])
    for k in range(3):
        z_k = outs[k].detach() + (0.7 * ensemble[k - 1] if k else 0)  # t sg(F_{k-1}) + f_k
        torch.testing.assert_close(outs[k].grad, expected_grad(z_k, y, w[k]))


def test_joint_gradient_is_per_exit_cross_entropy():
    outs = [torch.randn(3, 4, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    y = torch.tensor([1, 0, 3])
    methods.create("joint", loss_weights=[1.0, 3.0]).loss(outs, y).backward()
    for k, w in enumerate([1.0, 3.0]):
        torch.testing.assert_close(outs[k].grad, expected_grad(outs[k].detach(), y, w))


def test_loss_over_active_exits_only():
    outs = leaf_outs([[[0.0, 1.0]], [[2.0, 0.0]]])
    y = torch.tensor([0])
    m = methods.create("joint")
    only_second = m.loss(outs, y, active=[1])
    assert only_second.item() == pytest.approx(F.cross_entropy(outs[1], y).item())


def block_grads(model, x, y, loss_of):
    model.zero_grad()
    loss_of(model(x), y).backward()
    return [torch.cat([p.grad.flatten() for p in b.parameters()]) for b in model.blocks]


def test_grad_rescale_gives_mean_over_dependent_losses():
    # dL/db_n = 1/(N-n+1) sum_{i>=n} dL_i/db_n (paper Eq. 7) on a chain-shaped net.
    model = backbones.create("chain_tiny", num_classes=5).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([1, 4])
    joint = methods.create("joint")
    n = model.num_exits
    per_loss = [block_grads(model, x, y, lambda o, t, i=i: joint.loss(o, t, active=[i]))
                for i in range(n)]
    boost = methods.create("boostnet", temperature=0.0)  # t = 0: same losses as joint
    boost.prepare(model)
    assert model.grad_rescale
    rescaled = block_grads(model, x, y, boost.loss)
    for b in range(n):
        mean = sum(per_loss[i][b] for i in range(b, n)) / (n - b)
        torch.testing.assert_close(rescaled[b], mean)
    methods.create("joint").prepare(model)
    assert not model.grad_rescale


def test_stages():
    assert methods.create("joint").stages(3) == [Stage((0, 1, 2), (0, 1, 2), 1.0)]
    frozen = methods.create("sequential").stages(3)
    assert [(s.active_exits, s.trainable_exits) for s in frozen] == [
        ((0,), (0,)), ((1,), (1,)), ((2,), (2,))]
    free = methods.create("sequential", freeze_previous=False).stages(3)
    assert [s.trainable_exits for s in free] == [(0,), (0, 1), (0, 1, 2)]
    assert len(methods.create("boostnet", joint=False).stages(4)) == 4


def test_split_epochs_keeps_the_total():
    stages = methods.create("sequential").stages(3)
    assert split_epochs(10, stages) == [4, 3, 3]
    assert split_epochs(300, stages) == [100, 100, 100]
    with pytest.raises(ValueError, match="at least 3 epochs"):
        split_epochs(2, stages)
