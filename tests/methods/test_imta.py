"""imta: ISC through the model (forward, backward with and without isc_detach), the
one-for-all loss from the frozen network's last exit, the two stages, checkpoints, costs."""
import pytest
import torch
import torch.nn.functional as F

import methods
from bench import backbones, flops
from methods import forward_with_features, modules_of
from methods.lib.isc import ofa_loss


def installed(name="imta", backbone="chain_tiny", **options):
    torch.manual_seed(0)
    size = {"image_size": 16} if backbone == "chain_tiny" else {}
    model = backbones.create(backbone, num_classes=4, **size)
    method = methods.create(name, **options)
    method.install(model)
    return model, method


def test_defaults_follow_the_reference():
    assert methods.defaults("imta") == {
        "grad_rescale": True, "isc_detach": False, "kd_temperature": 1.0, "kd_weight": 0.1,
        "kd_reduction": "mean", "frozen_bn": "train", "isc_share": 0.5, "loss_weights": None}
    with pytest.raises(methods.OptionError, match="kd_reduction: expected one of mean"):
        methods.create("imta", kd_reduction="sum")


def test_inference_runs_the_isc_chain_and_not_the_stage_a_linears():
    model, method = installed()
    x = torch.randn(3, 3, 16, 16)
    model.eval()
    logits, h = forward_with_features(model, x)
    isc = modules_of(model).isc
    g1 = isc.heads[0].linear(h[0])
    g2 = isc.heads[1](h[1], g1)
    g3 = isc.heads[2](h[2], g2)
    for got, want in zip(logits, (g1, g2, g3)):
        torch.testing.assert_close(got, want)
    assert all(not m.parameters_used for m in model.modules()
               if isinstance(m, methods.ExitLinear))


def test_stage_a_is_the_backbone_with_its_own_heads():
    model, method = installed()
    plain = backbones.create("chain_tiny", num_classes=4, image_size=16)
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith("method_modules.")})
    method.configure(model, 0)
    x = torch.randn(2, 3, 16, 16)
    for a, b in zip(model.eval()(x), plain.eval()(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model.grad_rescale is True  # IMTA's gradient equilibrium in stage A
    stage_a, stage_b = method.stages(3)
    assert (stage_a.trains, stage_b.trains, stage_b.frozen_bn) == ("backbone", "method", "train")
    assert methods.split_epochs(10, method.stages(3)) == [5, 5]
    assert methods.split_epochs(10, methods.create("imta", isc_share=0.3).stages(3)) == [7, 3]


@pytest.mark.parametrize("isc_detach", [False, True])
def test_stage_b_loss_is_one_for_all_distillation_from_the_frozen_last_exit(isc_detach):
    model, method = installed(isc_detach=isc_detach, kd_temperature=2.0, kd_weight=0.6)
    method.configure(model, 1)
    x, y = torch.randn(5, 3, 16, 16), torch.tensor([0, 1, 2, 3, 0])
    model.train()
    outs, h = forward_with_features(model, x)
    teacher = modules_of(model).teacher
    last_linear = [m for m in model.modules() if isinstance(m, methods.ExitLinear)][-1]
    torch.testing.assert_close(teacher, last_linear.original(h[-1]).detach())
    stage_b = method.stages(3)[1]
    loss = method.loss_from_samples(method.stage_sample_losses(outs, y, stage_b))
    torch.testing.assert_close(loss, ofa_loss(outs, y, teacher, 2.0, 0.6, "mean"))
    # exit 3's loss alone reaches exit 2's ISC layers only without isc_detach
    isc = modules_of(model).isc
    F.cross_entropy(outs[2], y).backward()
    reached = isc.heads[1].linear.weight.grad is not None
    assert reached == (not isc_detach)
    assert isc.heads[2].collaboration[0].weight.grad is not None


def test_two_stages_train_what_they_say(make_trainer, tmp_path):
    trainer = make_trainer(tmp_path, "imta", epochs=2)
    model = trainer.model
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.stage_epochs = [1, 0]
    trainer.fit()
    after_a = {k: v.clone() for k, v in model.state_dict().items()}
    changed = {k for k in start if not torch.equal(start[k], after_a[k])}
    assert changed and not any(k.startswith("method_modules.") for k in changed)
    trainer.stage_epochs = [1, 1]
    state = trainer.fit()
    after_b = model.state_dict()
    changed = {k for k in after_a if not torch.equal(after_a[k], after_b[k])}
    weights = {k for k in changed if not k.endswith(("running_mean", "running_var",
                                                     "num_batches_tracked"))}
    assert weights and all(k.startswith("method_modules.isc.") for k in weights)
    # frozen_bn 'train': the frozen backbone's statistics drift in stage B
    assert any(k.startswith("blocks.") and k.endswith("running_mean") for k in changed)
    assert [r["stage"] for r in state.history[::3]] == [1, 2]
    record = trainer.training_record(state)
    assert [s["trains"] for s in record["stages"]] == ["backbone", "method"]
    assert record["stages"][1]["passes_per_step"]["backward_through"] == "method modules"


def test_frozen_batch_norm_fixed_with_eval_policy(make_trainer, tmp_path):
    trainer = make_trainer(tmp_path, "imta", epochs=2, frozen_bn="eval")
    trainer.stage_epochs = [1, 0]
    trainer.fit()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.stage_epochs = [1, 1]
    trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before
               if not k.startswith("method_modules."))


def test_checkpoint_round_trip_and_resume_across_the_stage_boundary(make_trainer, tmp_path,
                                                                   same_state):
    straight = make_trainer(tmp_path / "a", "imta", epochs=2)
    straight.fit()
    interrupted = make_trainer(tmp_path / "b", "imta", epochs=2)

    def stop_after_stage_a(info):
        if info["epoch"] == 1:
            raise KeyboardInterrupt

    interrupted.on_epoch = stop_after_stage_a
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = make_trainer(tmp_path / "b", "imta", epochs=2)
    resumed.fit()
    assert same_state(straight.model.state_dict(), resumed.model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    fresh = make_trainer(tmp_path / "c", "imta")
    fresh.model.load_state_dict(torch.load(tmp_path / "a" / "checkpoint.pt",
                                           weights_only=True)["model"])
    for a, b in zip(straight.model.eval()(x), fresh.model.eval()(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_each_exit_from_the_second_costs_more_than_joints_on_msdnet_tiny():
    joint = flops.per_exit(installed("joint", "msdnet_tiny")[0])
    imta_model, _ = installed("imta", "msdnet_tiny")
    imta = flops.per_exit(imta_model)
    assert imta[0] == joint[0] and all(i > j for i, j in zip(imta[1:], joint[1:]))
    # +2 C c + 2 c per exit from exit 2 on (C 4 classes, c 32 head channels), cumulative
    assert [i - j for i, j in zip(imta, joint)] == [0, 320, 640]
