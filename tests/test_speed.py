"""bench.speed: timing, alternation, and the reference adapter (on a stand-in checkout)."""
import sys
import textwrap

import pytest
import torch

import methods
from bench import backbones, speed
from bench.speed_reference import reference_args, reference_step

torch.set_num_threads(1)


def test_main_prints_timing_summary(capsys):
    assert speed.main(["--backbone", "msdnet_tiny", "--method", "boostnet", "--batch-size", "4",
                       "--steps", "2", "--warmup", "1", "--threads", "1", "--plain"]) == 0
    out = capsys.readouterr().out
    for word in ("median", "min", "max", "1 threads", "2 rounds alternating", torch.__version__,
                 "loadavg", "ours, NCHW"):
        assert word in out


def test_time_steps_trains_the_model():
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=3)
    before = [p.detach().clone() for p in model.parameters()]
    times = speed.time_steps(model, speed.method_loss("boostnet", model), batch_size=2,
                             steps=2, warmup=0, num_classes=3)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert model.grad_rescale is True  # boostnet installs its gradient rescaling
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_alternate_reverses_the_order_every_other_round():
    calls = []
    times = speed.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b"),
                             "c": lambda: calls.append("c")}, rounds=3, warmup=1)
    assert "".join(calls) == "abc" + "cba" + "abc" + "cba"
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_ratio_to_reference():
    times = {"ours": [1.0, 2.0, 3.0], "reference": [2.0, 2.0, 4.0]}
    assert speed.ratio_to(times, "ours", "reference") == (1.0, 0.75)


def test_reference_arguments_of_msdnet10_cifar():
    # the arguments of the reference's msdnet_scripts/train_cifar100_any.sh (+ args.py defaults)
    model = backbones.create("msdnet10_cifar", num_classes=100)
    args = reference_args(model, [0.5] * 10)
    assert vars(args) == dict(
        nBlocks=10, stepmode="even", step=2, base=4, nChannels=16, growthRate=6,
        grFactor=[1, 2, 4], bnFactor=[1, 2, 4], nScales=3, bottleneck=True, prune="max",
        reduction=0.5, dataset="cifar100", ensemble_reweight=[0.5] * 10)
    with pytest.raises(ValueError, match="not an MSDNet"):
        reference_args(backbones.create("chain_tiny"), [0.5] * 3)
    with pytest.raises(ValueError, match="10 or 100 classes"):
        reference_args(backbones.create("msdnet_tiny"), [0.5] * 3)  # its own head width


# A stand-in for the reference checkout, written here: the two classes with the interface
# the adapter uses (MSDNet(args) with forward(x, stage); DynamicNet's forward_all,
# parameters_m and train_all), recording what the adapter asked for.
STAND_IN = {
    "models/__init__.py": "",
    "models/msdnet_ge.py": """
        import torch
        from torch import nn
        BUILT = []
        class MSDNet(nn.Module):
            def __init__(self, args):
                super().__init__()
                BUILT.append(args)
                self.blocks = nn.ModuleList(nn.Conv2d(3, 3, 1) for _ in range(args.nBlocks))
                self.classifier = nn.ModuleList(nn.Linear(3, 100) for _ in range(args.nBlocks))
            def forward(self, x, stage=None):
                out = []
                for i, (b, c) in enumerate(zip(self.blocks, self.classifier)):
                    x = b(x)
                    out.append(c(x.mean((2, 3))))
                    if i == stage:
                        break
                return out
    """,
    "models/dynamic_net.py": """
        from utils.helper import STEPS
        class DynamicNet:
            def __init__(self, model, args):
                self.model, self.reweight = model, args.ensemble_reweight
            def train_all(self):
                self.model.train()
            def parameters_m(self, stage):
                return (list(self.model.blocks[stage].parameters())
                        + list(self.model.classifier[stage].parameters()))
            def forward_all(self, x, stage):
                STEPS.append(stage)
                outs, preds = self.model(x, stage), [0]
                for i, o in enumerate(outs):
                    preds.append((o + preds[-1]) * self.reweight[i])
                return outs, preds
    """,
    "utils/__init__.py": "",
    "utils/helper.py": "STEPS = []",
}


@pytest.fixture
def stand_in(tmp_path):
    for rel, text in STAND_IN.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] in ("models", "utils")]:
        del sys.modules[name]  # the stand-in's modules


def test_reference_step_from_a_checkout(stand_in):
    tmp_path = stand_in
    model = backbones.create("msdnet6_cifar", num_classes=100)
    step = reference_step(tmp_path, model, methods.create("boostnet", temperature=0.3))
    built, helper = sys.modules["models.msdnet_ge"], sys.modules["utils.helper"]
    net = built.BUILT[-1]
    assert (net.nBlocks, net.ensemble_reweight) == (6, [0.3] * 6)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 5, 9, 99])
    step(x, y)
    assert helper.STEPS == [5]  # forward_all up to the last exit, as train_cifar100.py
    with pytest.raises(ValueError, match="no counterpart"):
        reference_step(tmp_path, model, methods.create("joint"))
    with pytest.raises(FileNotFoundError, match="msdnet.py"):  # grad_rescale off: msdnet.py
        reference_step(tmp_path, model, methods.create("boostnet", grad_rescale=False))


def test_bad_reference_dir_exits_2(tmp_path, capsys):
    assert speed.main(["--backbone", "msdnet6_cifar", "--rounds", "1",
                       "--reference", str(tmp_path)]) == 2
    assert "expected a checkout of SHI-Labs/Boosted-Dynamic-Networks" in capsys.readouterr().err
