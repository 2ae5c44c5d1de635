"""A network cut into one stage per exit: the stages, chained by name, compute what the full
forward computes; their tensors are named as documented."""
import pytest
import torch

from bench.inference.stages import plan_stages, state_names
from inference_models import installed_model

torch.set_num_threads(1)


def _model(name, method="boostnet", **overrides):
    return installed_model(name, method, batch=8, **overrides)


def _chain(plans, x):
    """Run the stage modules one after another, by name: F_n of every exit."""
    values, logits = {"x": x}, []
    with torch.no_grad():
        for p in plans:
            outs = p.module(*[values[name] for name in p.inputs])
            values.update(zip(p.outputs, outs))
            logits.append(values[f"logits{p.index + 1}"])
    return logits


@pytest.mark.parametrize("name, method", [("chain_tiny", "boostnet"), ("msdnet_tiny", "imta"),
                                          ("msdnet_tiny", "ztw"), ("ranet8_cifar", "joint")])
def test_stages_chained_by_name_equal_the_full_forward(name, method):
    overrides = {"channels": 4, "growth_rate": 4, "step": 2} if name.startswith("ranet") else {}
    model, meth = _model(name, method, **overrides)
    plans = plan_stages(model, meth.combine, torch.randn(2, *model.input_size))
    assert len(plans) == model.num_exits
    x = torch.randn(5, *model.input_size)
    with torch.no_grad():
        want = meth.combine(model(x))
    for got, expected in zip(_chain(plans, x), want):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_names_say_what_crosses_between_stages():
    model, meth = _model("msdnet_tiny")
    plans = plan_stages(model, meth.combine, torch.randn(2, 3, 32, 32))
    assert plans[0].inputs == ("x",)
    assert plans[0].outputs == ("logits1", "raw1", "state1.0", "state1.1", "state1.2")
    assert plans[1].inputs == ("state1.0", "state1.1", "state1.2", "raw1")
    assert plans[2].inputs[-2:] == ("raw1", "raw2")
    assert plans[-1].outputs == ("logits3", "raw3")  # the last stage hands nothing on
    assert [t.shape[0] for t in plans[1].example] == [2, 2, 2, 2]


def test_method_modules_hand_on_their_kept_tensors():
    model, meth = _model("chain_tiny", "imta")
    plans = plan_stages(model, meth.combine, torch.randn(2, 3, 32, 32))
    assert "heads1.method_modules._previous" in plans[0].outputs
    assert "heads1.method_modules._previous" in plans[1].inputs


def test_state_names_follow_the_pytree():
    t = torch.zeros(1)
    assert state_names(2, t) == ["state2"]
    assert state_names(1, [t, t]) == ["state1.0", "state1.1"]
    assert state_names(3, {"h": t, "later": [t, t]}) == ["state3.h", "state3.later.0",
                                                         "state3.later.1"]


def test_a_network_in_training_mode_is_refused():
    model, meth = _model("chain_tiny")
    with pytest.raises(ValueError, match="eval mode"):
        plan_stages(model.train(), meth.combine, torch.randn(2, 3, 32, 32))
