"""training.precision in a step and in the trainer, and compiled training forwards
(bench.engine.precision, bench.engine.compiling)."""
import shutil

import pytest
import torch

import methods
from bench import backbones, data
from bench.engine import compiling, precision
from bench.config import TrainingConfig
from bench.pipeline.train import Trainer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
COMPILER = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                              reason="torch.compile on CPU needs a C compiler")


def loss_and_grads(resolved: str, device="cpu", compile_=False, batch=16,
                   backbone="msdnet_tiny"):
    """BoostNet's training loss on ``backbone`` and its gradients, for one fixed batch, as
    the trainer computes them (the method's train_step under the precision's autocast),
    without the optimizer step."""
    torch.manual_seed(0)
    model = backbones.create(backbone, num_classes=10).to(device)
    method = methods.create("boostnet")
    method.install(model)
    stage = method.stages(model.num_exits)[0]
    method.configure(model, 0)
    method.begin_training(model, torch.device(device))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []

    def backward_only(loss):
        losses.append(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()

    net = compiling.compile_forward(model, device) if compile_ else model
    ctx = methods.StepContext(net, model, opt, stage, 0, step=backward_only,
                              autocast=precision.autocast(resolved, device))
    methods.train_mode(model, stage.frozen_bn)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *model.input_size, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    outs = method.train_step(ctx, x, y)
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return losses[0].float().cpu(), grads.float().cpu(), outs.float().cpu()


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_a_bf16_step_matches_fp32_within_bf16_rounding():
    """bf16 keeps 8 significant bits (relative rounding 2^-9) in the autocast ops
    (convolutions, linear layers); batch norm, the losses and the weights stay float32. The
    loss then moves by about 1e-5 relative, but the gradients of a network at
    initialisation far more: the backward through training-mode batch norm subtracts nearly
    equal terms, and at random labels the gradient itself is a small difference. Measured on
    this step: 14% relative L2 error for bf16, 4.5% for fp16 (rounding 2^-12), in the ratio
    of their roundings. Stated tolerance: loss within 0.1%, the gradient vector within 25%
    (bf16) and 8% (fp16) in relative L2 norm, its direction within cosine 0.98 of fp32's."""
    loss32, grads32, _ = loss_and_grads("fp32")
    for resolved, tolerance in (("bf16", 0.25), ("fp16", 0.08)):
        loss, grads, _ = loss_and_grads(resolved)
        assert not torch.equal(grads, grads32)  # autocast really ran in low precision
        assert loss.item() == pytest.approx(loss32.item(), rel=1e-3)
        assert relative_error(grads, grads32) < tolerance, resolved
        assert torch.nn.functional.cosine_similarity(grads, grads32, dim=0) > 0.98


def test_resolve_per_device(monkeypatch):
    assert [precision.resolve(p, "cpu") for p in ("auto", "fp32", "bf16", "fp16")] == [
        "fp32", "fp32", "bf16", "fp32"]  # fp16 on a CPU: fp32, as training.amp did
    with pytest.raises(ValueError, match="expected one of auto, fp32, bf16, fp16, found 'fp64'"):
        precision.resolve("fp64", "cpu")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Old GPU")
    for supported, auto in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True, s=supported: s)
        assert precision.resolve("auto", "cuda") == auto
        assert precision.resolve("fp16", "cuda:0") == "fp16"
    with pytest.raises(ValueError, match="Old GPU has no native bfloat16; use fp16 or fp32"):
        precision.resolve("bf16", "cuda")


def test_only_fp16_scales_the_loss():
    assert [precision.grad_scaler(p, "cpu").is_enabled() for p in ("fp32", "bf16", "fp16")] == [
        False, False, True]
    assert not precision.autocast("fp32", "cpu")._enabled
    assert precision.autocast("bf16", "cpu").fast_dtype == torch.bfloat16
    assert precision.autocast("fp16", "cpu").fast_dtype == torch.float16


def test_an_fp16_step_is_scaled_and_unscaled():
    """The scaled backward gives scale x the gradients; the step divides them back out."""
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    scaler = precision.grad_scaler("fp16", "cpu")
    precision.optimizer_step(opt, scaler)((w * torch.tensor([3.0, 4.0])).sum())
    assert w.grad.tolist() == [3.0, 4.0]  # unscaled in place before the step
    assert w.detach().tolist() == [1.0 - 1.5, 2.0 - 2.0]


@pytest.fixture(scope="module")
def splits():
    return data.load("synthetic", "unused", heldout=32, seed=0, train_subset=64,
                     test_subset=32, options={"train_size": 128, "test_size": 32,
                                              "image_size": 16})


def train(splits, tmp_path, **training):
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=10, image_size=16)
    cfg = TrainingConfig.model_validate({"epochs": 2, "batch_size": 32, "device": "cpu",
                                         "optimizer": {"lr": 0.05}, **training})
    trainer = Trainer(model, methods.create("boostnet"), splits, cfg, seed=0,
                      device=torch.device(cfg.device), checkpoint=tmp_path / "checkpoint.pt")
    state = trainer.fit()
    trainer.history = state.history
    return trainer, trainer.training_record(state)


def test_the_trainer_resolves_and_records_the_precision(splits, tmp_path):
    _, auto = train(splits, tmp_path / "auto", precision="auto")
    assert auto["precision"] == "fp32"  # auto on a CPU
    fp32_trainer, _ = train(splits, tmp_path / "fp32")
    bf16_trainer, bf16 = train(splits, tmp_path / "bf16", precision="bf16")
    assert bf16["precision"] == "bf16" and bf16_trainer.autocast.fast_dtype == torch.bfloat16
    assert not bf16_trainer.scaler.is_enabled()
    for p, q in zip(bf16_trainer.model.parameters(), fp32_trainer.model.parameters()):
        assert p.dtype == torch.float32  # weights stay float32 under autocast
    losses = [[r["train_loss"] for r in t_.history] for t_ in (fp32_trainer, bf16_trainer)]
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)
    amp_trainer, amp = train(splits, tmp_path / "amp", amp=True)  # the old spelling: fp16,
    assert amp_trainer.training.precision == "fp16"  # which on a CPU trains in fp32
    assert amp["precision"] == "fp32" and not amp_trainer.scaler.is_enabled()


def test_static_batch_forward_sends_other_sizes_to_the_eager_model():
    calls = []
    forward = compiling.StaticBatchForward(lambda x, **kw: calls.append(("graph", len(x))),
                                           lambda x, **kw: calls.append(("eager", len(x))))
    for n in (8, 8, 3, 8):
        forward(torch.zeros(n, 1), num_exits=2)
    assert calls == [("graph", 8), ("graph", 8), ("eager", 3), ("graph", 8)]
    assert compiling.uses_cuda_graphs("cuda:1") and not compiling.uses_cuda_graphs("cpu")


@pytest.mark.slow
@COMPILER
def test_a_compiled_step_matches_eager():
    """torch.compile on the CPU (inductor): same loss, per-exit losses and gradients as
    eager up to float reordering (stated tolerance: 1e-4 relative). The smallest backbone:
    compiling msdnet_tiny's step takes minutes on a 2-core CPU."""
    eager = loss_and_grads("fp32", backbone="chain_tiny")
    compiled = loss_and_grads("fp32", compile_=True, backbone="chain_tiny")
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@CUDA
def test_on_cuda_bf16_and_cuda_graphs_match_eager_fp32():
    """On a GPU: the bf16 step within the CPU test's tolerance of fp32, and the compiled
    forward with CUDA graphs (reduce-overhead) equal to eager up to reordering."""
    loss32, grads32, outs32 = loss_and_grads("fp32", "cuda")
    loss16, grads16, _ = loss_and_grads("bf16", "cuda")
    assert loss16.item() == pytest.approx(loss32.item(), rel=1e-3)
    assert relative_error(grads16, grads32) < 0.25
    compiled = loss_and_grads("fp32", "cuda", compile_=True)
    for a, b in zip(compiled, (loss32, grads32, outs32)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.cuda
@CUDA
def test_on_cuda_a_compiled_bf16_run_with_a_partial_last_batch(splits, tmp_path):
    """drop_last false: 64 images in batches of 24 give two full batches through the CUDA
    graph and a partial one of 16 through the eager forward."""
    trainer, record = train(splits, tmp_path, device="cuda", precision="auto", compile=True,
                            batch_size=24, drop_last=False)
    assert record["precision"] == precision.resolve("auto", "cuda")
    assert [e["steps"] for e in record["epochs"]] == [3, 3]
    assert all(r["train_loss"] == r["train_loss"] for r in trainer.history)  # no NaN
