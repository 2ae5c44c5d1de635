"""bench.pipeline.step_graphs: a method's step taken as a replayed CUDA graph.

On a CPU: which steps are recorded and what is said (``auto`` silent off CUDA, one warning
line for a method that declares it cannot be recorded, ``true`` refused), and the
trainer's whole loop through the recorded-step path with a recorder that re-runs the step
at each replay, against eager training. On a GPU (marked ``cuda``, skipped without one):
N steps recorded and replayed by torch.cuda.graph against N eager steps from the same
state, within the tolerance docs/speed.md states."""
import logging

import pytest
import torch

import methods
from bench import backbones, data
from bench.backbones.common import parameters_per_exit
from bench.config import OptimizerConfig, TrainingConfig
from bench.engine import cuda_graphs, precision
from bench.errors import UsageError
from bench.pipeline import speed, step_graphs, train
from bench.pipeline.step_setup import stage_context
from graph_fixtures import ReRun

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SGD = OptimizerConfig(lr=0.1, momentum=0.9, weight_decay=1e-4)
# GPU tolerance on every parameter after the steps (docs/speed.md, "CUDA graphs"): a
# replay runs the recorded kernels, so the two differ by the GPU's own run-to-run
# rounding at most (cuDNN made deterministic for the comparison).
TOLERANCE = {"fp32": {"rtol": 1e-4, "atol": 1e-5}, "bf16": {"rtol": 1e-2, "atol": 1e-3}}


def setup(method_name, device="cpu", resolved="fp32", backbone="chain_tiny", seed=0, **kw):
    torch.manual_seed(seed)
    model = backbones.create(backbone, num_classes=5, **kw)
    method = methods.create(method_name)
    method.install(model)
    model.to(device)
    ctx = stage_context(model, method, parameters_per_exit(model), 0, SGD,
                        scaler=precision.grad_scaler(resolved, device),
                        autocast=precision.autocast(resolved, device), device=device)
    methods.train_mode(model, ctx.stage.frozen_bn)
    return model, method, ctx


def batches(sizes, image=32, device="cpu"):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 3, image, image, generator=g).to(device),
             torch.randint(0, 5, (n,), generator=g).to(device)) for n in sizes]


def test_auto_on_a_cpu_is_the_eager_step_and_says_nothing(caplog):
    model, method, ctx = setup("boostnet")
    with caplog.at_level(logging.WARNING, logger="bench.pipeline"):
        step = step_graphs.training_step(method, ctx, setting="auto", device="cpu",
                                         resolved_precision="fp32")
    assert not isinstance(step, cuda_graphs.GraphedStep) and caplog.records == []
    before = [p.detach().clone() for p in model.parameters()]
    (x, y), = batches([4])
    assert step(x, y).shape == (3, 4)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_true_on_a_cpu_is_refused_naming_the_key_and_the_device():
    _, method, ctx = setup("joint")
    with pytest.raises(cuda_graphs.CudaGraphsRefused,
                       match="training.cuda_graphs is true, but method 'joint' trains on cpu"):
        step_graphs.training_step(method, ctx, setting=True, device="cpu",
                                  resolved_precision="fp32")
    with pytest.raises(UsageError, match="training.cuda_graphs is true, but this machine "
                                         "trains on cpu"):
        step_graphs.check_device(True, torch.device("cpu"))
    step_graphs.check_device("auto", torch.device("cpu"))  # nothing to say


def test_a_method_that_cannot_be_recorded_falls_back_with_one_line(caplog):
    _, method, ctx = setup("l2w")
    method.begin_training(ctx.model, torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="bench.pipeline"):
        step = step_graphs.training_step(method, ctx, setting="auto", device="cuda",
                                         resolved_precision="bf16")
    assert not isinstance(step, cuda_graphs.GraphedStep)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("training.cuda_graphs is auto; method 'l2w': eager steps") \
        and "meta step" in line
    with pytest.raises(cuda_graphs.CudaGraphsRefused, match="method 'l2w' cannot be recorded"):
        step_graphs.training_step(method, ctx, setting=True, device="cuda",
                                  resolved_precision="bf16")


def test_only_l2w_of_the_registered_methods_declares_a_blocker():
    stage = methods.create("joint").stages(3)[0]
    blocked = [n for n in methods.names() if methods.create(n).graph_blocker(stage)]
    assert blocked == ["l2w"]
    assert step_graphs.blockers(methods.create("joint"), stage, resolved_precision="fp16",
                                world_size=2)[0].startswith("fp16's gradient scaler")


@pytest.mark.parametrize("method_name", ["boostnet", "imta"])
def test_recorded_steps_take_the_same_steps_as_eager_ones(method_name):
    """The glue (the recording context, the check after replay, the lr watch) through a
    recorder that re-runs the step: every batch stepped once, as eagerly."""
    eager_model, eager_method, eager_ctx = setup(method_name)
    model, method, ctx = setup(method_name)
    checked = []
    real_check = ctx.check_finite
    ctx.check_finite = lambda loss, samples: (checked.append(1), real_check(loss, samples))
    step = step_graphs.graphed(method, ctx, torch.device("cpu"), "fp32", recorder=ReRun())
    for i, (x, y) in enumerate(batches([4, 4, 4, 4, 4, 3, 4, 4])):
        if i == 6:
            for c in (ctx, eager_ctx):
                c.optimizer.param_groups[0]["lr"] = 0.01
        expected = eager_method.train_step(eager_ctx, x, y)
        torch.testing.assert_close(step(x, y), expected, rtol=1e-6, atol=1e-7)
    for a, b in zip(model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert step.replays == 4 and step.recordings == 2 and len(checked) == 8


def test_bench_speed_with_cuda_graphs_on_a_cpu_is_refused_in_one_line():
    base = dict(optimizer=SGD, backbone="chain_tiny", method="joint", dataset="synthetic",
                num_classes=5, batch_size=4, rounds=1, device="cpu", cuda_graphs=True)
    with pytest.raises(UsageError, match=r"^training.cuda_graphs is true, but method 'joint' "
                                         r"trains on cpu"):
        speed.measure(speed.Settings(**base, warmup=4))
    with pytest.raises(UsageError, match="--cuda-graphs: the first 4 steps warm up and record"):
        speed.measure(speed.Settings(**base, warmup=2))


def test_a_non_finite_loss_is_caught_after_the_replay():
    _, method, ctx = setup("joint")
    step = step_graphs.graphed(method, ctx, torch.device("cpu"), "fp32", recorder=ReRun())
    step.warmup_left = 0
    (x, y), = batches([4])
    with pytest.raises(FloatingPointError, match="training loss is nan"):
        step(x * float("nan"), y)
    assert step.replays == 1


@pytest.fixture(scope="module")
def splits():
    return data.load("synthetic", "unused", heldout=32, seed=0, train_subset=90,
                     test_subset=32, options={"train_size": 160, "test_size": 32,
                                              "image_size": 16})


def fit(splits, tmp_path, recorder=None):
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=10, image_size=16)
    cfg = TrainingConfig.model_validate({
        "epochs": 4, "batch_size": 16, "eval_batch_size": 64, "device": "cpu",
        "drop_last": False, "cuda_graphs": "auto", "optimizer": {"lr": 0.05}})
    trainer = train.Trainer(model, methods.create("boostnet"), splits, cfg, seed=0,
                            device=torch.device("cpu"), checkpoint=tmp_path / "ckpt.pt")
    steps = []
    if recorder is not None:  # the trainer's call, with a CPU stand-in for the recording
        real = train.training_step

        def with_recorder(method, ctx, **kw):
            steps.append(step_graphs.graphed(method, ctx, torch.device("cpu"), "fp32",
                                             recorder=recorder))
            return steps[-1]

        train.training_step = with_recorder
        try:
            trainer.fit()
        finally:
            train.training_step = real
    else:
        trainer.fit()
    return model, steps


def test_the_trainer_through_the_recorded_path_trains_the_eager_model(splits, tmp_path):
    """4 epochs, lr x0.1 at epochs 3 and 4, 90 images in batches of 16: 5 full batches
    and one of 10 per epoch."""
    eager, _ = fit(splits, tmp_path / "eager")
    graphed, (step,) = fit(splits, tmp_path / "graphed", ReRun())
    for a, b in zip(graphed.state_dict().values(), eager.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert step.recordings == 3 and step.replays == 4 * 5 - cuda_graphs.WARMUP_STEPS


# ---------------------------------------------------------------------------------------
# On a GPU: torch.cuda.graph for real


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("resolved", ["fp32", "bf16"])
def test_on_cuda_graphed_steps_match_eager_steps(resolved):
    """12 steps of BoostNet on msdnet10_cifar from one state, eager and graphed: 3 warm-up
    steps, a recording, a learning-rate change (recorded again) and an odd batch."""
    if resolved == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    deterministic = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        eager_model, eager_method, eager_ctx = setup("boostnet", "cuda", resolved,
                                                     backbone="msdnet10_cifar")
        model, method, ctx = setup("boostnet", "cuda", resolved, backbone="msdnet10_cifar")
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(),
                                                     eager_model.parameters()))
        initial = [p.detach().clone() for p in model.parameters()]
        step = step_graphs.training_step(method, ctx, setting=True, device="cuda",
                                         resolved_precision=resolved)
        assert isinstance(step, cuda_graphs.GraphedStep)
        losses = []
        for i, (x, y) in enumerate(batches([32] * 9 + [17] + [32] * 2, device="cuda")):
            if i == 7:
                for c in (ctx, eager_ctx):
                    c.optimizer.param_groups[0]["lr"] = 0.01
            losses.append((step(x, y), eager_method.train_step(eager_ctx, x, y)))
        torch.cuda.synchronize()
        assert step.recordings == 2 and step.replays == 12 - cuda_graphs.WARMUP_STEPS - 1
        for graphed, eager in losses:
            torch.testing.assert_close(graphed, eager, **TOLERANCE[resolved])
        for a, b in zip(model.state_dict().values(), eager_model.state_dict().values()):
            if a.is_floating_point():
                torch.testing.assert_close(a, b, **TOLERANCE[resolved])
        moved = max((a - b).abs().max().item() for a, b in zip(model.parameters(), initial))
        assert moved > 1e-3  # the steps did train
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic
