"""bench.pipeline.speed: the command line, steps that are the method's own training steps, the
alternation of several implementations, --epoch, and the reference adapter (on a stand-in
checkout written here)."""
import math
import sys
import textwrap

import pytest
import torch

import methods
from bench import backbones
from bench.pipeline import speed
from bench.backbones import native
from bench.pipeline.speed_reference import reference_args, reference_step

torch.set_num_threads(1)


def test_main_prints_timing_summary(capsys):
    assert speed.main(["--backbone", "msdnet_tiny", "--method", "boostnet", "--batch-size", "4",
                       "--steps", "2", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for word in ("median", "min", "max", "threads 1", torch.__version__, "loadavg",
                 "1 forward, 1 backward, 1 optimizer steps", "(2 rounds)", "cpu, fp32"):
        assert word in out
    assert len(out.splitlines()) == 1


def test_every_stage_is_timed_and_options_are_passed(capsys):
    assert speed.main(["--backbone", "chain_tiny", "--method", "sequential", "--batch-size",
                       "2", "--steps", "1", "--warmup", "0", "--threads", "1", "--option",
                       "freeze_previous=false"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"chain_tiny / sequential stage {n}/3 (exit {n})" for n in (1, 2, 3)]
    with pytest.raises(SystemExit):
        speed.main(["--method", "joint", "--option", "nope"])


def test_time_steps_trains_the_model():
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=3)
    before = [p.detach().clone() for p in model.parameters()]
    times = speed.time_steps(model, methods.create("boostnet"), steps=2, warmup=0,
                             batch_size=2, num_classes=3)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert model.grad_rescale is True  # boostnet installs its gradient rescaling
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("name", methods.names())
def test_every_method_can_be_timed(name, capsys):
    assert speed.main(["--backbone", "chain_tiny", "--method", name, "--batch-size", "4",
                       "--steps", "1", "--warmup", "0", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    n_stages = len(methods.create(name).stages(3))
    assert len(lines) == n_stages and all("s/step" in line for line in lines)


def test_other_steps_are_timed_in_turn_with_ours(capsys):
    assert speed.main(["--backbone", "msdnet_tiny", "--method", "kd", "--against", "joint",
                       "--plain", "--batch-size", "4", "--steps", "3", "--warmup", "1",
                       "--threads", "1"]) == 0
    ours, plain, joint = capsys.readouterr().out.splitlines()
    assert ours.startswith("msdnet_tiny / kd")
    assert plain.startswith("  ours, NCHW: median") and "ours / ours, NCHW: " in plain
    assert joint.startswith("  joint: median") and "(median of per-round ratios)" in joint


def test_profile_sets_the_implementations_side_by_side(capsys):
    assert speed.main(["--backbone", "msdnet_tiny", "--method", "joint", "--plain",
                       "--batch-size", "4", "--steps", "1", "--warmup", "1", "--threads", "1",
                       "--profile"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("self time per op"):].splitlines()
    assert table[1].split()[-3:] == ["ours", "ours,", "NCHW"]
    rows = {line[:48].strip(): [float(v) for v in line[48:].split()] for line in table[2:]}
    # ours runs channels_last with the batch norm in our own kernel; the NCHW model calls
    # PyTorch's batch norm
    bn_ours = [op for op in rows if op.startswith("_TrainBatchNorm")]
    assert bn_ours and all(rows[op][0] > 0 and rows[op][1] == 0 for op in bn_ours)
    assert rows["aten::native_batch_norm"][0] == 0 < rows["aten::native_batch_norm"][1]
    total = rows["total (all ops)"]
    assert all(t > 0 for t in total)
    assert all(max(v) <= max(total) for v in rows.values())


def test_a_step_checks_its_loss_as_the_trainer_does():
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=3)
    with torch.no_grad():
        model.heads[0][2].weight.fill_(float("nan"))
    step = speed.stepper(model, methods.create("joint"), batch_size=2, num_classes=3)
    with pytest.raises(FloatingPointError, match="training loss is nan"):
        step()


def test_alternate_reverses_the_order_every_other_round():
    calls = []
    times = speed.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b"),
                             "c": lambda: calls.append("c")}, rounds=3, warmup=1)
    assert "".join(calls) == "abc" + "cba" + "abc" + "cba"
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_ratio_to_reference():
    times = {"ours": [1.0, 2.0, 3.0], "reference": [2.0, 2.0, 4.0]}
    assert speed.ratio_to(times, "ours", "reference") == (1.0, 0.75)


def test_epoch_estimate_extrapolates_the_median_round():
    e = speed.epoch_estimate([2.0, 1.0, 9.0], steps=10, batch_size=64)  # median 2 s / 10 steps
    assert e["epoch_steps"] == math.ceil(50000 / 64) == 782
    assert e["step_s"] == pytest.approx(0.2) and e["epoch_s"] == pytest.approx(782 * 0.2)
    assert e["images_per_s"] == pytest.approx(64 / 0.2)


def test_an_epoch_round_takes_augmented_batches_of_the_data():
    data = speed.epoch_data(4, 3, (3, 8, 8), num_classes=5, seed=0)
    seen = []
    one_round = speed.epoch_rounds(lambda x, y: seen.append((x, y)), data, batch_size=4,
                                   device="cpu", seed=0)
    one_round()
    one_round()
    assert len(seen) == 6 and all(x.shape == (4, 3, 8, 8) and x.dtype == torch.float32
                                  for x, _ in seen)
    first, second = (torch.cat([y for _, y in seen[i:i + 3]]) for i in (0, 3))
    assert sorted(first.tolist()) == sorted(second.tolist()) == sorted(data.targets("train").tolist())
    assert not torch.equal(seen[0][0], seen[3][0])  # each round a new epoch's order and crops


def test_epoch_and_precision_on_the_command_line(capsys):
    assert speed.main(["--backbone", "chain_tiny", "--method", "boostnet", "--batch-size", "4",
                       "--rounds", "2", "--warmup", "1", "--epoch", "--epoch-steps", "3",
                       "--precision", "bf16", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for word in ("cpu, bf16", "(2 rounds of 3 steps)", "images/s",
                 "one epoch of 50,000 images (12500 steps)", "extrapolated from the median round"):
        assert word in out
    assert speed.main(["--backbone", "chain_tiny", "--steps", "1", "--warmup", "0",
                       "--precision", "auto"]) == 0
    out = capsys.readouterr().out
    assert "cpu, fp32" in out  # auto on a CPU
    # which batch norm ran is said with every CPU figure
    assert out.rstrip().endswith("; batch norm: C kernel" if native.kernel() is not None
                                 else "; batch norm: PyTorch ops")
    assert speed.main(["--backbone", "chain_tiny", "--steps", "1", "--warmup", "0",
                       "--profile"]) == 0
    out = capsys.readouterr().out
    assert "aten::" in out and "Self CPU" in out and "profiled round: wall-clock" in out
    assert "self time per op" not in out  # only ours was timed: nothing to set beside it
    for bad in (["--precision", "fp64"], ["--epoch-steps", "0"]):
        with pytest.raises(SystemExit):
            speed.main(["--backbone", "chain_tiny", *bad])


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


def test_the_reference_is_timed_beside_ours_with_its_epoch(stand_in, capsys):
    assert speed.main(["--backbone", "msdnet_tiny", "--num-classes", "100", "--method",
                       "boostnet", "--batch-size", "4", "--rounds", "2", "--warmup", "1",
                       "--threads", "1", "--epoch", "--epoch-steps", "2",
                       "--reference", str(stand_in)]) == 2  # msdnet_tiny has its own heads
    assert "10 or 100 classes" in capsys.readouterr().err
    assert speed.main(["--backbone", "msdnet6_cifar", "--method", "boostnet", "--batch-size",
                       "4", "--rounds", "2", "--warmup", "1", "--threads", "1", "--epoch",
                       "--epoch-steps", "2", "--precision", "bf16",
                       "--reference", str(stand_in)]) == 0
    ours, reference = capsys.readouterr().out.splitlines()
    assert "images/s" in ours and "cpu, bf16" in ours
    assert reference.startswith("  reference: median") and "images/s" in reference
    assert "ours / reference: " in reference and "(ratio of medians)" in reference
    assert sys.modules["utils.helper"].STEPS == [5] * 2 * (1 + 2)  # 2 steps x (warmup + 2 rounds)
    assert speed.main(["--backbone", "msdnet6_cifar", "--method", "joint", "--rounds", "1",
                       "--reference", str(stand_in)]) == 2
    assert "no counterpart" in capsys.readouterr().err
