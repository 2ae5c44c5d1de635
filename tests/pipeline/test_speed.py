"""bench.pipeline.speed: measure() and its data, steps that are the method's own training
steps set up as the trainer sets them up, the alternation of several implementations,
epoch rounds, and the reference adapter (on a stand-in checkout written here). The command
line that prints it: tests/commands/test_speed_command.py."""
import math
import sys
import textwrap

import pytest
import torch

import methods
from bench import backbones
from bench.config import OptimizerConfig
from bench.errors import UsageError
from bench.pipeline.speed import Settings, measure
from bench.pipeline.speed.reference import reference_args, reference_step
from bench.pipeline.speed.rounds import alternate, epoch_estimate, ratio_to
from bench.pipeline.speed.steps import epoch_data, epoch_round, fixed_round, method_step

torch.set_num_threads(1)

SGD = OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False)


def quick(**changes) -> Settings:
    """A tiny, fast measurement."""
    return Settings(**{"optimizer": SGD, "backbone": "chain_tiny", "batch_size": 4,
                       "rounds": 2, "warmup": 0, **changes})


def test_measure_returns_the_times_of_every_stage_with_their_context():
    result = measure(quick(method="sequential", options={"freeze_previous": False}))
    assert result.precision == "fp32" and result.num_classes == 100  # cifar100's
    assert [(t.stage, t.stages, t.name) for t in result.stages] == [
        (n, 3, f"exit {n}") for n in (1, 2, 3)]
    for t in result.stages:
        assert list(t.times) == ["ours"] and len(t.times["ours"]) == 2
        assert all(v > 0 for v in t.times["ours"])
        assert t.passes["forward"] == 1 and t.threads == 1 and len(t.loadavg) == 3
        assert t.profile is None and t.op_times is None
    only = measure(quick(method="sequential", stage=2))
    assert [t.stage for t in only.stages] == [2]


def test_classes_come_from_the_data_set_unless_given():
    assert measure(quick(dataset="cifar10")).num_classes == 10
    assert measure(quick(dataset="cifar10", num_classes=7)).num_classes == 7
    with pytest.raises(UsageError, match="--dataset: unknown data set 'nope'"):
        measure(quick(dataset="nope"))
    with pytest.raises(UsageError, match="backbone 'msdnet_step4_imagenet' takes 3x224x224 "
                                         "images, data set 'cifar100' serves 3x32x32"):
        measure(quick(backbone="msdnet_step4_imagenet"))


@pytest.mark.parametrize("bad, message", [
    ({"rounds": 0}, "--rounds: expected at least 1"),
    ({"epoch_steps": 0}, "--epoch-steps: expected at least 1"),
    ({"warmup": -1}, "--warmup: expected at least 0"),
    ({"method": "joint", "options": {"nope": 1}}, "nope"),
    ({"precision": "fp64"}, "precision: expected one of"),
    ({"method": "sequential", "stage": 4}, "--stage: method 'sequential' has stages 1..3"),
])
def test_bad_settings_are_usage_errors(bad, message):
    with pytest.raises(UsageError, match=message):
        measure(quick(**bad))


def test_a_step_trains_the_model_with_the_method_installed():
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=3)
    before = [p.detach().clone() for p in model.parameters()]
    step = method_step(model, methods.create("boostnet"), SGD)
    step(torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))
    assert model.grad_rescale is True  # boostnet installs its gradient rescaling
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_step_checks_its_loss_as_the_trainer_does():
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=3)
    with torch.no_grad():
        model.heads[0][2].weight.fill_(float("nan"))
    step = fixed_round(method_step(model, methods.create("joint"), SGD),
                       torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), "cpu")
    with pytest.raises(FloatingPointError, match="training loss is nan"):
        step()


@pytest.mark.parametrize("name", methods.names())
def test_every_method_can_be_timed(name):
    result = measure(quick(method=name, rounds=1))
    assert len(result.stages) == len(methods.create(name).stages(3))


def test_other_implementations_are_timed_in_turn_with_ours_and_profiled():
    result = measure(quick(backbone="msdnet_tiny", method="kd", against="joint", plain=True,
                           rounds=2, warmup=1, profile=True))
    (timing,) = result.stages
    assert list(timing.times) == ["ours", "ours, NCHW", "joint"]
    assert all(len(t) == 2 for t in timing.times.values())
    assert "aten::" in timing.profile.table and timing.profile.busy == "CPU ops"
    assert timing.profile.wall_s > 0 and timing.profile.busy_s > 0
    assert list(timing.op_times) == ["ours", "ours, NCHW", "joint"]
    assert all(sum(ops.values()) > 0 for ops in timing.op_times.values())


def test_alternate_reverses_the_order_every_other_round():
    calls = []
    times = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b"),
                       "c": lambda: calls.append("c")}, rounds=3, warmup=1)
    assert "".join(calls) == "abc" + "cba" + "abc" + "cba"
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_ratio_to_reference():
    times = {"ours": [1.0, 2.0, 3.0], "reference": [2.0, 2.0, 4.0]}
    assert ratio_to(times, "ours", "reference") == (1.0, 0.75)


def test_epoch_estimate_extrapolates_the_median_round():
    e = epoch_estimate([2.0, 1.0, 9.0], steps=10, batch_size=64)  # median 2 s / 10 steps
    assert e["epoch_steps"] == math.ceil(50000 / 64) == 782
    assert e["step_s"] == pytest.approx(0.2) and e["epoch_s"] == pytest.approx(782 * 0.2)
    assert e["images_per_s"] == pytest.approx(64 / 0.2)


def test_an_epoch_round_takes_augmented_batches_of_the_data():
    data = epoch_data(4, 3, (3, 8, 8), num_classes=5, seed=0)
    seen = []
    one_round = epoch_round(lambda x, y: seen.append((x, y)), data, batch_size=4,
                            device="cpu", seed=0)
    one_round()
    one_round()
    assert len(seen) == 6 and all(x.shape == (4, 3, 8, 8) and x.dtype == torch.float32
                                  for x, _ in seen)
    first, second = (torch.cat([y for _, y in seen[i:i + 3]]) for i in (0, 3))
    assert sorted(first.tolist()) == sorted(second.tolist()) == sorted(
        data.targets("train").tolist())
    assert not torch.equal(seen[0][0], seen[3][0])  # each round a new epoch's order and crops


def test_epoch_rounds_time_their_steps():
    result = measure(quick(epoch=True, epoch_steps=3, precision="bf16"))
    (timing,) = result.stages
    assert result.precision == "bf16" and timing.steps_per_round == 3
    assert measure(quick(precision="auto")).precision == "fp32"  # auto on a CPU


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
    model = backbones.create("msdnet6_cifar", num_classes=100)
    step = reference_step(stand_in, model, methods.create("boostnet", temperature=0.3), SGD)
    built, helper = sys.modules["models.msdnet_ge"], sys.modules["utils.helper"]
    net = built.BUILT[-1]
    assert (net.nBlocks, net.ensemble_reweight) == (6, [0.3] * 6)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 5, 9, 99])
    step(x, y)
    assert helper.STEPS == [5]  # forward_all up to the last exit, as train_cifar100.py
    with pytest.raises(ValueError, match="no counterpart"):
        reference_step(stand_in, model, methods.create("joint"), SGD)
    with pytest.raises(FileNotFoundError, match="msdnet.py"):  # grad_rescale off: msdnet.py
        reference_step(stand_in, model, methods.create("boostnet", grad_rescale=False), SGD)


def test_the_reference_is_timed_beside_ours_with_its_epoch(stand_in, tmp_path_factory):
    with pytest.raises(UsageError, match="expected a checkout of SHI-Labs"):
        measure(quick(backbone="msdnet6_cifar", reference=tmp_path_factory.mktemp("empty")))
    with pytest.raises(UsageError, match="10 or 100 classes"):  # msdnet_tiny: its own heads
        measure(quick(backbone="msdnet_tiny", reference=stand_in))
    result = measure(quick(backbone="msdnet6_cifar", warmup=1, epoch=True, epoch_steps=2,
                           precision="bf16", reference=stand_in))
    (timing,) = result.stages
    assert list(timing.times) == ["ours", "reference"]
    assert sys.modules["utils.helper"].STEPS == [5] * 2 * (1 + 2)  # 2 steps x (warmup + 2)
    with pytest.raises(UsageError, match="no counterpart"):
        measure(quick(backbone="msdnet6_cifar", method="joint", reference=stand_in))
