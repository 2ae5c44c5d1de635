"""methods.heads: exits' final linears found from outside, method modules attached to the
model without changing the backbone's keys, run inside its forward and counted by fvcore."""
import copy

import pytest
import torch
from torch import nn

import methods
from bench import backbones, flops
from bench.backbones.common import parameters_per_exit
from methods import ExitHeads, attach, final_linears, forward_with_features, modules_of

torch.set_num_threads(1)


class AddPrevious(ExitHeads):
    """Exit n >= 2 returns W h + b + V f_{n-1} (V: C x C, no bias); exit 1 its own linear."""

    def __init__(self, num_exits: int, classes: int, use_original: bool = True):
        super().__init__()
        self.links = nn.ModuleList(nn.Linear(classes, classes, bias=False)
                                   for _ in range(num_exits - 1))
        self.replacements = nn.ModuleList()
        self.use_original = use_original

    def head(self, n, h, linear, previous):
        own = linear.original(h) if self.use_original else torch.zeros(
            h.shape[0], linear.out_features)
        return own if n == 0 else own + self.links[n - 1](previous)


def tiny(name="msdnet_tiny", **kw):
    torch.manual_seed(0)
    return backbones.create(name, num_classes=5, **kw)


@pytest.mark.parametrize("name", ["chain_tiny", "msdnet_tiny", "ranet8_cifar"])
def test_final_linears_are_the_layers_whose_output_is_each_exit(name):
    model = tiny(name)
    layers = final_linears(model)
    assert len(layers) == model.num_exits
    assert all(isinstance(m, nn.Linear) and m.out_features == 5 for m in layers)
    x = torch.randn(2, *model.input_size)
    logits, feats = forward_with_features(model.eval(), x)
    for layer, f, h in zip(layers, logits, feats):
        torch.testing.assert_close(f, h @ layer.weight.T + layer.bias)


def test_a_net_whose_exit_is_not_a_linear_output_is_refused():
    class Scaled(nn.Module):
        num_exits, input_size = 1, (3, 4, 4)

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(48, 2)

        def forward(self, x, num_exits=None):
            return [2 * self.fc(x.flatten(1))]

    with pytest.raises(ValueError, match="exit 1's logits are not the output of a linear"):
        final_linears(Scaled())


def test_attach_keeps_keys_and_outputs_and_adds_the_method_modules():
    model = tiny()
    keys = set(model.state_dict())
    x = torch.randn(3, *model.input_size)
    before = [f.detach() for f in model.eval()(x)]
    heads = AddPrevious(model.num_exits, 5)
    attach(model, heads)
    assert modules_of(model) is heads
    assert set(model.state_dict()) == keys | {f"method_modules.links.{i}.weight" for i in (0, 1)}
    with torch.no_grad():
        for link in heads.links:
            link.weight.zero_()
        assert all(torch.equal(a, b) for a, b in zip(model(x), before))
        heads.links[0].weight.copy_(torch.eye(5))
        after = model(x)
    torch.testing.assert_close(after[1], before[1] + before[0])  # f_2 + I f_1
    torch.testing.assert_close(after[2], before[2])  # link 2 still zero
    with pytest.raises(ValueError, match="already has method modules"):
        attach(model, AddPrevious(model.num_exits, 5))


def test_method_modules_are_in_the_per_exit_groups_and_the_state_dict_round_trip():
    model = tiny()
    attach(model, AddPrevious(model.num_exits, 5))
    ids = [{id(p) for p in group} for group in parameters_per_exit(model)]
    links = modules_of(model).links
    assert [[id(link.weight) in g for g in ids] for link in links] == [[False, True, False],
                                                                      [False, False, True]]
    copy = tiny()
    attach(copy, AddPrevious(copy.num_exits, 5))
    copy.load_state_dict(model.state_dict())
    x = torch.randn(2, *model.input_size)
    assert all(torch.equal(a, b) for a, b in zip(copy.eval()(x), model.eval()(x)))


def test_fvcore_counts_method_modules_at_their_exit_and_idle_parameters_are_not_counted():
    model = tiny()
    plain, plain_params = flops.per_exit(model), flops.params_per_exit(model)
    attach(model, AddPrevious(model.num_exits, 5))
    counted = flops.per_exit(model)
    assert [c - p for c, p in zip(counted, plain)] == [0, 25, 50]  # + C*C per exit n >= 2
    assert [c - p for c, p in zip(flops.params_per_exit(model), plain_params)] == [0, 25, 50]
    modules_of(model).use_original = False  # the backbone's linears idle at inference
    linear_params = [m.weight.numel() + m.bias.numel() for m in final_linears(model)]
    dropped = [p - q for p, q in zip(plain_params, flops.params_per_exit(model))]
    cumulative = [sum(linear_params[: n + 1]) - 25 * n for n in range(3)]
    assert dropped == cumulative


def test_a_model_keeps_its_methods_modules_and_refuses_another_methods():
    model = tiny()
    imta = methods.create("imta")
    imta.install(model)
    heads = modules_of(model)
    again = methods.create("imta")
    again.install(model)  # e.g. the trainer after the run's setup: the same modules
    assert again.exit_heads is heads
    for other in ("ztw", "joint"):
        with pytest.raises(ValueError, match="carries the modules of method 'imta'"):
            methods.create(other).install(model)


def test_a_model_with_method_modules_deep_copies_after_a_training_forward():
    model = tiny()
    imta = methods.create("imta")
    imta.install(model)
    imta.configure(model, 1)  # stage B: the teacher is kept
    x = torch.randn(2, *model.input_size)
    model.train()(x)[-1].sum()  # the last forward's tensors carry a graph
    twin = copy.deepcopy(model)
    assert modules_of(twin).teacher is None and modules_of(twin)._previous is None
    exit_layers = [m for m in twin.modules() if isinstance(m, methods.ExitLinear)]
    assert all(m.heads is modules_of(twin) for m in exit_layers)  # the copy's own heads
    for a, b in zip(twin.eval()(x), model.eval()(x)):
        torch.testing.assert_close(a, b)
