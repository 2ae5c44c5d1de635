"""ztw: the cascade through the model (detached previous logits), the ensembles in combine
and their post-training fit on a non-test split, the frozen-network regime, checkpoints
and costs."""
import pytest
import torch
import torch.nn.functional as F

import methods
from bench import backbones, flops
from methods import forward_with_features, modules_of


def installed(name="ztw", backbone="chain_tiny", **options):
    torch.manual_seed(0)
    size = {"image_size": 16} if backbone == "chain_tiny" else {}
    model = backbones.create(backbone, num_classes=4, **size)
    method = methods.create(name, **options)
    method.install(model)
    return model, method


def test_defaults_follow_the_reference_cifar_runs():
    assert methods.defaults("ztw") == {
        "layer_norm": False, "ensemble_split": "train", "ensemble_epochs": 501,
        "ensemble_lr": 5e-4, "ensemble_batch_size": 512, "frozen_share": 0.0,
        "loss_weights": None}
    with pytest.raises(methods.OptionError, match="ensemble_split: expected one of train, "
                                                  "heldout, found 'test'"):
        methods.create("ztw", ensemble_split="test")


@pytest.mark.parametrize("layer_norm", [False, True])
def test_cascade_adds_the_previous_exits_detached_logits(layer_norm):
    model, method = installed(layer_norm=layer_norm)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    model.train()
    outs, h = forward_with_features(model, x)
    finals = sorted((m for m in model.modules() if isinstance(m, methods.ExitLinear)),
                    key=lambda m: m.exit_index)
    links = modules_of(model).links
    f1 = finals[0].original(h[0])
    f2 = finals[1].original(h[1]) + links[0].linear(links[0].norm(f1))
    f3 = finals[2].original(h[2]) + links[1].linear(links[1].norm(f2))
    for got, want in zip(outs, (f1, f2, f3)):
        torch.testing.assert_close(got, want)
    F.cross_entropy(outs[1], y).backward()  # exit 2's loss: not into exit 1's head
    assert finals[0].weight.grad is None and links[0].linear.weight.grad is not None
    assert finals[1].weight.grad is not None


def test_combine_is_raw_until_the_ensembles_are_fitted():
    model, method = installed()
    outs = [torch.randn(5, 4) for _ in range(3)]
    assert method.combine(outs) == outs and not method.post_training_done()
    heads = modules_of(model)
    with torch.no_grad():
        heads.ensembles.weights[2].copy_(torch.tensor([0.0, 1.0, -1.0]))
        heads.ensembles.biases[2].copy_(torch.tensor([0.1, 0.0, 0.0, -0.2]))
    heads.ensembles_fitted.fill_(True)
    z = method.combine(outs)
    lp = [F.log_softmax(f, 1) for f in outs]
    want = (lp[0] + torch.e * lp[1] + lp[2] / torch.e) / 3 + torch.tensor([0.1, 0, 0, -0.2])
    torch.testing.assert_close(z[2], want)
    assert method.post_training_done()


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_post_training_fits_on_the_chosen_split_once(make_trainer, tmp_path, split,
                                                     monkeypatch):
    trainer = make_trainer(tmp_path, "ztw", epochs=1, ensemble_split=split,
                           ensemble_epochs=3)
    seen = []
    fit = trainer.method.fit_post_training
    monkeypatch.setattr(trainer.method, "fit_post_training",
                        lambda logits, targets, seed: seen.append(len(targets)) or
                        fit(logits, targets, seed))
    state = trainer.fit()
    assert seen == [trainer.data.size(split)]  # the whole split, no partial batch dropped
    assert state.post_training["split"] == split and trainer.method.post_training_done()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert bool(saved["model"]["method_modules.ensembles_fitted"])
    assert saved["post_training"]["samples"] == seen[0]
    again = make_trainer(tmp_path, "ztw", epochs=1, ensemble_split=split, ensemble_epochs=3)
    again.fit()  # resumed after the fit: nothing trains or fits again
    for (k, a), b in zip(trainer.model.state_dict().items(),
                         again.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_frozen_network_regime_trains_only_final_linears_and_cascade(make_trainer, tmp_path):
    trainer = make_trainer(tmp_path, "ztw", epochs=2, frozen_share=0.5, ensemble_epochs=1)
    assert [s.trains for s in trainer.stages] == ["backbone", "heads"]
    trainer.stage_epochs = [1, 0]
    trainer.fit()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.stage_epochs = [1, 1]
    trainer.fit()
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    final = {f"heads.{n}.2.{p}" for n in range(3) for p in ("weight", "bias")}
    # (the ensembles were fitted after the first call already, and are not fitted again)
    assert changed - final == {"method_modules.links.0.linear.weight",
                               "method_modules.links.1.linear.weight"}
    assert changed & final == final


def test_costs_cascade_by_fvcore_ensembles_analytically():
    joint = flops.per_exit(installed("joint", "msdnet_tiny")[0])
    model, method = installed("ztw", "msdnet_tiny")
    traced = flops.per_exit(model)
    assert [t - j for t, j in zip(traced, joint)] == [0, 16, 32]  # + C^2 per exit n >= 2
    assert method.analytic_macs(3, 4) == [4, 8, 12]  # n C per exit, C = 4
    with_ln = flops.per_exit(installed("ztw", "msdnet_tiny", layer_norm=True)[0])
    assert [t - j for t, j in zip(with_ln, joint)] == [0, 36, 72]  # + 5 C for LayerNorm
