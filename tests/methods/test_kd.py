"""kd: distillation from the last exit, on hand-computed tensors."""
import math

import pytest
import torch
import torch.nn.functional as F

import methods

F1 = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
F2 = [[0.0, 2.0, 1.0], [-1.0, 0.0, 3.0]]
F3 = [[3.0, 0.0, 0.0], [0.0, 1.0, 2.0]]
Y = [0, 2]


def leaf(values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def softmax(z, t=1.0):
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def by_hand(outs, labels, t, alpha, weights=(1.0, 1.0, 1.0)):
    """w_N CE(f_N) + sum_{n<N} w_n [(1-a) CE(f_n) + a t^2 KL(p_N^t || p_n^t)], batch means."""
    b = len(labels)
    teacher = outs[-1]
    total = weights[-1] * sum(-math.log(softmax(z)[y]) for z, y in zip(teacher, labels)) / b
    for w, f in zip(weights, outs[:-1]):
        ce = sum(-math.log(softmax(z)[y]) for z, y in zip(f, labels)) / b
        kl = sum(sum(p * math.log(p / q) for p, q in zip(softmax(tz, t), softmax(z, t)))
                 for z, tz in zip(f, teacher)) / b
        total += w * ((1 - alpha) * ce + alpha * t * t * kl)
    return total


def test_defaults_and_option_checks():
    assert methods.defaults("kd") == {"temperature": 1.0, "alpha": 0.75, "loss_weights": None}
    with pytest.raises(methods.OptionError, match=r"alpha: expected a value in \[0, 1\]"):
        methods.create("kd", alpha=1.5)
    with pytest.raises(methods.OptionError, match="temperature"):
        methods.create("kd", temperature=0.0)


@pytest.mark.parametrize("t,alpha,weights", [(1.0, 0.75, None), (2.0, 0.3, [0.5, 2.0, 1.5])])
def test_loss_by_hand_on_plain_logits(t, alpha, weights):
    kd = methods.create("kd", temperature=t, alpha=alpha, loss_weights=weights)
    got = kd.loss([leaf(F1), leaf(F2), leaf(F3)], torch.tensor(Y))
    assert got.item() == pytest.approx(by_hand([F1, F2, F3], Y, t, alpha,
                                               weights or (1.0, 1.0, 1.0)), rel=1e-12)


def test_distillation_sends_no_gradient_to_the_teacher():
    outs = [leaf(F1), leaf(F2), leaf(F3)]
    y = torch.tensor(Y)
    methods.create("kd", temperature=2.0, alpha=0.9).loss(outs, y).backward()
    last = leaf(F3)
    F.cross_entropy(last, y).backward()  # f_N's gradient: its own CE, nothing else
    torch.testing.assert_close(outs[-1].grad, last.grad, rtol=0, atol=1e-15)
    assert outs[0].grad.abs().sum() > 0


def test_alpha_zero_is_joint_training():
    outs = [leaf(F1), leaf(F2), leaf(F3)]
    y = torch.tensor(Y)
    assert methods.create("kd", alpha=0.0).loss(outs, y).item() == pytest.approx(
        methods.create("joint").loss(outs, y).item(), rel=1e-12)
    assert methods.create("kd").combine(outs) == outs  # F_n = f_n
