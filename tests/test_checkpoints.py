"""bench.checkpoints: reference checkpoint formats, key mapping, logits equal the reference's.

The files under tests/data/reference/ were written by the reference implementations
themselves (docs/checkpoints.md says how); their expected logits are the reference models'
own eval-mode outputs on the committed input batch.
"""
import argparse
import zipfile
from pathlib import Path

import pytest
import torch

from bench import backbones, checkpoints
from bench.checkpoints import CheckpointError

torch.set_num_threads(1)

DATA = Path(__file__).parent / "data" / "reference"
BACKBONE = "msdnet_tiny"
CONFIG = {"n_blocks": 4, "head_channels": 16}  # the reference run's configuration
# checkpoint file -> the reference's expected outputs for it
REFERENCE_FILES = {
    "boostnet_msdnet_ge_epoch0.pth": "boostnet_msdnet_ge_expected.pt",  # model_latest.pth layout
    "boostnet_msdnet_epoch0.pth": "boostnet_msdnet_expected.pt",  # DynamicNet.state_dict()
    "kalviny_msdnet_epoch0.pth.tar": "kalviny_msdnet_expected.pt",  # MSDNet-PyTorch, module.
}


def _eval_logits(model, x):
    model.eval()
    with torch.no_grad():
        return torch.stack(model(x))


@pytest.fixture(scope="module")
def x_eval():
    return torch.load(DATA / "batches.pt", weights_only=True)["x_eval"]


@pytest.mark.parametrize("name", sorted(REFERENCE_FILES))
def test_reference_logits_match(name, x_eval):
    expected = torch.load(DATA / REFERENCE_FILES[name], weights_only=True)["logits"]
    model = checkpoints.load(DATA / name, BACKBONE, **CONFIG)
    ours = _eval_logits(model, x_eval)
    assert ours.shape == expected.shape == (4, 8, 10)
    assert (ours - expected).abs().max().item() < 1e-4


def test_reference_keys_map_one_to_one_in_order():
    """Structural check of the rules: every reference key lands on a distinct key of ours,
    in the same order, with the same shape (locally this was also checked on every MSDNet
    registry configuration built by the reference code, see docs/checkpoints.md)."""
    raw = checkpoints.state_dict_of(checkpoints.read(DATA / "boostnet_msdnet_ge_epoch0.pth"))
    ours = backbones.create(BACKBONE, **CONFIG).state_dict()
    mapped = [checkpoints.msdnet_key(k) for k in raw]
    assert mapped == list(ours)
    assert all(raw[k].shape == ours[m].shape for k, m in zip(raw, mapped))


@pytest.mark.parametrize("reference, ours", [
    ("classifier.3.linear.weight", "heads.3.4.weight"),
    ("classifier.0.m.1.net.1.running_var", "heads.0.1.1.running_var"),
    ("blocks.0.0.layers.0.net.0.weight", "blocks.0.0.layers.0.0.weight"),  # CIFAR stem
    ("blocks.0.0.layers.0.1.bias", "blocks.0.0.layers.0.1.bias"),  # ImageNet stem (no .net)
    ("blocks.0.1.layers.0.conv_normal.net.3.weight", "blocks.0.1.units.0.normal.3.weight"),
    ("blocks.2.0.layers.1.conv_down.net.0.weight", "blocks.2.0.units.1.down.0.weight"),
    ("blocks.1.1.m.0.net.1.num_batches_tracked", "blocks.1.1.convs.0.1.num_batches_tracked"),
])
def test_msdnet_rules(reference, ours):
    assert checkpoints.msdnet_key(reference) == ours


@pytest.mark.parametrize("name", ["msdnet10_cifar", "msdnet5_lingrow_cifar", "msdnet_tiny"])
def test_msdnet_rules_leave_our_names_alone(name):
    keys = list(backbones.create(name).state_dict())
    assert [checkpoints.msdnet_key(k) for k in keys] == keys


def test_ranet_names_pass_through():
    model = backbones.create("ranet8_cifar", channels=4, growth_rate=4, step=2)
    translate = checkpoints.key_translator(model)
    keys = list(model.state_dict())
    assert any(k.startswith("classifier.") for k in keys)
    assert [translate(k) for k in keys] == keys


def test_module_prefix_stripped():
    assert checkpoints.strip_module_prefix("module.module.blocks.0.x") == "blocks.0.x"
    assert checkpoints.strip_module_prefix("blocks.0.module.x") == "blocks.0.module.x"


def _reference_state():
    return checkpoints.state_dict_of(checkpoints.read(DATA / "boostnet_msdnet_epoch0.pth"))


@pytest.mark.parametrize("layout", ["bare", "ddp_dynamicnet", "kalviny_like", "ours_trainer"])
def test_every_container_and_prefix(layout, tmp_path, x_eval):
    ref = _reference_state()
    ddp = {f"module.{k}": v for k, v in ref.items()}
    ours = checkpoints.load(DATA / "boostnet_msdnet_epoch0.pth", BACKBONE, **CONFIG)
    content = {"bare": ref, "ddp_dynamicnet": {"model": ddp},
               "kalviny_like": {"epoch": 3, "arch": "msdnet", "state_dict": ddp},
               "ours_trainer": {"model": ours.state_dict(), "epoch": 1, "history": []}}[layout]
    torch.save(content, tmp_path / "c.pth")
    model = checkpoints.load(tmp_path / "c.pth", BACKBONE, **CONFIG)
    assert torch.equal(_eval_logits(model, x_eval), _eval_logits(ours, x_eval))


def test_num_classes_inferred_from_the_final_linear(tmp_path):
    src = backbones.create(BACKBONE, num_classes=7)
    torch.save({"model": src.state_dict()}, tmp_path / "seven.pth")
    model = checkpoints.load(tmp_path / "seven.pth", BACKBONE)
    assert model.heads[-1][-1].out_features == 7
    assert torch.equal(model.heads[0][-1].weight, src.heads[0][-1].weight)


def test_explicit_num_classes_that_disagrees_is_misshaped():
    with pytest.raises(CheckpointError) as err:
        checkpoints.load(DATA / "kalviny_msdnet_epoch0.pth.tar", BACKBONE, num_classes=5, **CONFIG)
    msg = str(err.value)
    assert "kalviny_msdnet_epoch0.pth.tar" in msg and "mis-shaped (8)" in msg
    assert "heads.3.4.weight: file (10, 16), model (5, 16)" in msg


def test_wrong_configuration_lists_unexpected_and_misshaped():
    with pytest.raises(CheckpointError) as err:  # 3 blocks and 32-channel heads
        checkpoints.load(DATA / "boostnet_msdnet_ge_epoch0.pth", BACKBONE)
    msg = str(err.value)
    assert "boostnet_msdnet_ge_epoch0.pth" in msg and "'msdnet_tiny'" in msg
    assert "unexpected in the file (44)" in msg
    assert "blocks.3.0.units.0.normal.1.{weight, bias, running_mean, running_var, num_batches_tracked}" in msg
    assert "mis-shaped" in msg and "heads.0.0.0.weight: file (16, 64, 3, 3), model (32, 64, 3, 3)" in msg


def test_missing_key_is_listed(tmp_path):
    ref = _reference_state()
    del ref["classifier.2.linear.bias"]
    torch.save({"model": ref}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"(?s)partial\.pth.*missing from the file \(1\):"
                                              r"\n    heads\.2\.4\.bias"):
        checkpoints.load(tmp_path / "partial.pth", BACKBONE, **CONFIG)


def test_not_a_state_dict(tmp_path):
    torch.save({"epoch": 3, "notes": "no weights"}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"x\.pth: no state dict found.*\['epoch', 'notes'\]"):
        checkpoints.load(tmp_path / "x.pth", BACKBONE)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth: no such checkpoint file"):
        checkpoints.load(tmp_path / "nope.pth", BACKBONE)


def test_arbitrary_pickles_are_refused(tmp_path):
    """weights_only=True stays on: an object outside the allowlist is an error, not code."""
    torch.save({"model": _reference_state(), "args": argparse.Namespace(lr=0.1)},
               tmp_path / "with_args.pth")
    with pytest.raises(CheckpointError, match=r"with_args\.pth: cannot be read .*weights_only"):
        checkpoints.load(tmp_path / "with_args.pth", BACKBONE, **CONFIG)


def test_numpy_scalars_in_the_optimizer_state_are_read():
    """The BoostNet scripts' weight decays come from np.linspace (numpy float64)."""
    ckpt = checkpoints.read(DATA / "boostnet_msdnet_ge_epoch0.pth")
    decay = ckpt["optimizer"]["param_groups"][0]["weight_decay"]
    assert type(decay).__module__ == "numpy" and float(decay) == pytest.approx(1e-4)


def test_numpy1_scalars_are_read(tmp_path):
    """Checkpoints written under numpy 1 name numpy.core.multiarray.scalar (numpy 2 writes
    numpy._core...): the same file with the old name in its pickle must load."""
    ckpt = checkpoints.read(DATA / "boostnet_msdnet_ge_epoch0.pth")
    torch.save(ckpt, tmp_path / "new.pth")
    with zipfile.ZipFile(tmp_path / "new.pth") as src, \
            zipfile.ZipFile(tmp_path / "old.pth", "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                assert b"numpy.core.multiarray\nscalar" in data
            dst.writestr(item, data)
    model = checkpoints.load(tmp_path / "old.pth", BACKBONE, **CONFIG)
    assert model.num_exits == 4
