"""Training regimes (methods.regimes): each regime's plan of stages and epochs, what phase 1
and a frozen backbone train (methods.heads.last_exit_parameters, Stage.scope), and which
method refuses which regime, and why."""
import pytest
import torch
from torch import nn

import methods
from bench import backbones
from bench.backbones.common import parameters_per_exit
from methods.base import METHODS
from methods.training import Stage, stage_parameters, train_mode


def test_joint_is_the_methods_own_stages_over_every_epoch():
    plan = methods.plan(methods.create("sequential"), 3, "joint", 9, None)
    assert [(p.stage, p.epochs, p.method_stage, p.phase) for p in plan] == [
        (s, 3, i, None) for i, s in enumerate(methods.create("sequential").stages(3))]


@pytest.mark.parametrize("regime,scope", [("disjoint", "other_exits"), ("mixed", "all")])
def test_phase_one_then_the_methods_stages_on_the_rest_of_the_epochs(regime, scope):
    plan = methods.plan(methods.create("imta"), 4, regime, 10, 4)
    assert [(p.epochs, p.method_stage, p.phase) for p in plan] == [
        (4, None, 1), (3, 0, 2), (3, 1, 2)]
    first = plan[0].stage
    assert (first.active_exits, first.scope, first.frozen_bn) == ((3,), "last_exit",
                                                                  "eval_all")
    assert [p.stage.scope for p in plan[1:]] == [scope, scope]
    # the method's own stages keep what they train; disjoint fixes frozen statistics
    assert [p.stage.trains for p in plan[1:]] == ["backbone", "method"]
    assert plan[2].stage.frozen_bn == ("eval_all" if regime == "disjoint" else "train")


def test_no_phase_one_with_zero_backbone_epochs():
    plan = methods.plan(methods.create("joint"), 3, "mixed", 5, 0)
    assert [(p.epochs, p.phase) for p in plan] == [(5, 2)]


@pytest.mark.parametrize("regime,epochs,split,detail", [
    ("joint", 4, 2, "backbone_epochs is for the disjoint and mixed"),
    ("mixed", 4, 4, "must be in 0..3"),
    ("frozen", 4, 2, "must be one of joint, disjoint, mixed"),
])
def test_bad_plans_say_why(regime, epochs, split, detail):
    with pytest.raises(ValueError, match=detail):
        methods.plan(methods.create("joint"), 3, regime, epochs, split)


def test_a_bad_scope_is_refused():
    with pytest.raises(ValueError, match="Stage.scope"):
        Stage((0,), (0,), 1.0, scope="backbone")


# Which method has a meaning under which regime (docs/regimes.md's table).
ALLOWED = [
    ("joint", {}, "disjoint"), ("joint", {}, "mixed"),
    ("sequential", {}, "mixed"), ("sequential", {"freeze_previous": False}, "mixed"),
    ("boostnet", {"grad_rescale": False}, "disjoint"), ("boostnet", {}, "mixed"),
    ("boostnet", {"joint": False}, "mixed"),
    ("kd", {}, "disjoint"), ("kd", {}, "mixed"),
    ("imta", {"grad_rescale": False}, "disjoint"), ("imta", {}, "mixed"),
    ("ztw", {}, "disjoint"), ("ztw", {}, "mixed"),
    ("l2w", {}, "disjoint"), ("l2w", {}, "mixed"),
]
REFUSED = [
    ("sequential", {}, "disjoint", "last exit alone"),
    ("boostnet", {}, "disjoint", "grad_rescale: false"),
    ("boostnet", {"joint": False, "grad_rescale": False}, "disjoint", "in turn"),
    ("imta", {}, "disjoint", "grad_rescale: false"),
    ("ztw", {"frozen_share": 0.5}, "disjoint", "frozen_share: 0"),
    ("ztw", {"frozen_share": 0.5}, "mixed", "frozen_share: 0"),
]


def test_every_method_is_in_the_table():
    """Every method of the package (plugins that other tests registered aside)."""
    ours = {n for n in methods.names() if METHODS.get(n).__module__.startswith("methods.")}
    assert {m for m, _, _ in ALLOWED} | {m for m, _, _, _ in REFUSED} == ours
    assert len(ours) == 7


@pytest.mark.parametrize("name,options,regime", ALLOWED)
def test_regimes_with_a_meaning(name, options, regime):
    method = methods.create(name, **options)
    assert methods.regime_refusal(method, regime) is None
    assert methods.regime_refusal(method, "joint") is None


@pytest.mark.parametrize("name,options,regime,why", REFUSED)
def test_regimes_without_a_meaning_say_why(name, options, regime, why):
    assert why in methods.regime_refusal(methods.create(name, **options), regime)


def _names(model, params) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_the_last_exit_depends_on_the_backbone_and_its_final_head():
    model = backbones.create("chain_tiny", num_classes=4, image_size=16)
    found = _names(model, methods.last_exit_parameters(model))
    assert found == {n for n, _ in model.named_parameters()
                     if n.startswith(("blocks.", "heads.2."))}
    assert all(p.requires_grad for p in model.parameters())  # left as it was
    assert all(p.grad is None for p in model.parameters())


def test_the_last_exit_of_a_vit_is_everything_but_the_earlier_exits():
    pytest.importorskip("timm")
    model = backbones.create("vit_cifar_ee", num_classes=4)
    found = _names(model, methods.last_exit_parameters(model))
    everything = {n for n, _ in model.named_parameters()}
    early = {n for n in everything if n.startswith(("exits.0.", "exits.1.", "exits.2."))}
    assert early and found == everything - early


def test_method_modules_idle_while_bypassed():
    model = backbones.create("chain_tiny", num_classes=4, image_size=16)
    plain = [o.detach() for o in model(torch.ones(2, 3, 16, 16))]
    methods.create("ztw").install(model)
    cascaded = model(torch.ones(2, 3, 16, 16))
    assert not torch.equal(cascaded[2], plain[2])  # the cascade adds to exits 2 and 3
    with methods.bypassed(model):
        for a, b in zip(model(torch.ones(2, 3, 16, 16)), plain):
            assert torch.equal(a, b)
    assert not methods.modules_of(model).bypass
    assert _names(model, methods.last_exit_parameters(model)) == {
        n for n, _ in model.named_parameters() if n.startswith(("blocks.", "heads.2."))}


@pytest.mark.parametrize("scope,trained", [
    ("last_exit", {"blocks", "heads.2"}),
    ("other_exits", {"heads.0", "heads.1", "method_modules"}),
    ("all", {"blocks", "heads.0", "heads.1", "heads.2", "method_modules"})])
def test_a_stages_scope_narrows_what_trains(scope, trained):
    model = backbones.create("chain_tiny", num_classes=4, image_size=16)
    methods.create("ztw").install(model)
    groups = parameters_per_exit(model)
    params = stage_parameters(model, groups, Stage((0, 1, 2), (0, 1, 2), 1.0, scope=scope))
    prefixes = {n.split(".")[0] if n.startswith(("blocks", "method")) else
                ".".join(n.split(".")[:2]) for n in _names(model, params)}
    assert prefixes == trained


def test_eval_all_puts_wholly_frozen_modules_in_eval_mode_dropout_too():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), nn.Linear(2, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    train_mode(model, "eval")
    assert model[0][0].training is False and model[0][1].training is True
    train_mode(model, "eval_all")
    assert model[0].training is False and model[0][1].training is False
    assert model.training and model[1].training
