import math

import pytest
import torch
import torch.nn.functional as F

from methods.lib.distill import distillation_loss, kd_loss, kl_to_teacher


def leaf(values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def softmax_list(z, temperature=1.0):
    e = [math.exp(v / temperature) for v in z]
    return [v / sum(e) for v in e]


def ce_by_hand(rows, labels):
    return sum(-math.log(softmax_list(z)[y]) for z, y in zip(rows, labels)) / len(rows)


def kl_by_hand(student_rows, teacher_rows, temperature):
    """sum over the batch of sum_c p log(p / q), not yet divided."""
    total = 0.0
    for s, t in zip(student_rows, teacher_rows):
        p, q = softmax_list(t, temperature), softmax_list(s, temperature)
        total += sum(pc * math.log(pc / qc) for pc, qc in zip(p, q))
    return total


F1 = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
F2 = [[0.0, 2.0, 1.0], [-1.0, 0.0, 3.0]]
F3 = [[3.0, 0.0, 0.0], [0.0, 1.0, 2.0]]
Y = [0, 2]


@pytest.mark.parametrize("reduction, divisor", [("batchmean", 2), ("mean", 2 * 3)])
def test_kl_reductions_by_hand(reduction, divisor):
    got = kl_to_teacher(leaf(F1), leaf(F3), temperature=2.0, reduction=reduction)
    assert got.item() == pytest.approx(kl_by_hand(F1, F3, 2.0) / divisor, rel=1e-12)


def test_kd_loss_by_hand():
    T, a = 2.0, 0.75
    outs, y = [leaf(F1), leaf(F2), leaf(F3)], torch.tensor(Y)
    expected = ce_by_hand(F3, Y)
    for f in (F1, F2):
        expected += (1 - a) * ce_by_hand(f, Y) + a * T * T * kl_by_hand(f, F3, T) / 2
    assert kd_loss(outs, y, temperature=T, alpha=a).item() == pytest.approx(expected, rel=1e-12)


def test_kd_loss_weights_scale_each_exit_term():
    outs, y = [leaf(F1), leaf(F2), leaf(F3)], torch.tensor(Y)
    per_exit = [kd_loss(outs, y, weights=w).item()
                for w in ([1, 0, 0], [0, 1, 0], [0, 0, 1])]
    assert per_exit[2] == pytest.approx(ce_by_hand(F3, Y), rel=1e-12)
    weighted = kd_loss(outs, y, weights=[2.0, 0.5, 3.0]).item()
    assert weighted == pytest.approx(2 * per_exit[0] + 0.5 * per_exit[1] + 3 * per_exit[2])
    with pytest.raises(ValueError, match="loss weights has 2 values for 3 exits"):
        kd_loss(outs, y, weights=[1, 1])


def test_no_gradient_reaches_the_teacher_from_distillation():
    # With alpha = 1 every early exit trains on the KL alone; f_N's gradient is then exactly
    # the gradient of its own CE, (softmax(f_N) - onehot) / B.
    outs, y = [leaf(F1), leaf(F2), leaf(F3)], torch.tensor(Y)
    kd_loss(outs, y, temperature=3.0, alpha=1.0).backward()
    onehot = F.one_hot(y, 3).double()
    own_ce = (torch.softmax(outs[2].detach(), dim=1) - onehot) / 2
    torch.testing.assert_close(outs[2].grad, own_ce, rtol=0, atol=1e-15)


def test_student_gradient_of_the_kl_term():
    # d/ds [T^2 KL(softmax(t/T) || softmax(s/T)) / B] = T (softmax(s/T) - softmax(t/T)) / B
    T = 2.0
    s, t = leaf(F1), leaf(F3)
    (T * T * kl_to_teacher(s, t, T)).backward()
    expected = T * (torch.softmax(s.detach() / T, 1) - torch.softmax(t.detach() / T, 1)) / 2
    torch.testing.assert_close(s.grad, expected, rtol=1e-12, atol=1e-15)
    assert t.grad is None


def test_given_teacher_and_alpha_zero_is_plain_sum_of_ce():
    outs, y = [leaf(F1), leaf(F2)], torch.tensor(Y)
    got = distillation_loss(outs, y, teacher=leaf(F3), temperature=1.0, alpha=0.0)
    assert got.item() == pytest.approx(ce_by_hand(F1, Y) + ce_by_hand(F2, Y), rel=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"reduction": "sum"}, "reduction 'sum' is not one of batchmean, mean"),
    ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\], got 1.5"),
])
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kd_loss([leaf(F1), leaf(F2)], torch.tensor(Y), **kwargs)
