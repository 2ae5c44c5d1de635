"""The BoostNet reference implementation's training step, for ``bench speed --reference``.

Nothing of the reference is part of this project. ``reference_dir`` is a checkout the user
provides of SHI-Labs/Boosted-Dynamic-Networks; its ``models/msdnet_ge.py`` (MSDNet with
IMTA's gradient equilibrium; ``models/msdnet.py`` without it) and ``models/dynamic_net.py``
(DynamicNet) are imported from there at run time. The step is the one its
``train_cifar100.py`` takes: ``DynamicNet.forward_all``, the sum over exits n of
CE(f_n + sg(P_{n-1}), y) with P_n = t_n (f_n + P_{n-1}) and P_0 = 0, backward, and SGD with
the weight decay in per-block parameter groups, as its ``main`` builds it; the optimizer's
values are ours (the suite's ``training.optimizer``: lr 0.1, momentum 0.9, weight decay 1e-4
by default, the reference's too).
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import OptimizerConfig

Step = Callable[[torch.Tensor, torch.Tensor], None]


def reference_args(model: nn.Module, temperatures: list[float]) -> types.SimpleNamespace:
    """The reference's command-line arguments that build the architecture of our MSDNet
    ``model`` (``model.config``), with ensemble reweighting ``temperatures``."""
    cfg = getattr(model, "config", None)
    if cfg is None or "n_blocks" not in cfg:
        raise ValueError(f"--reference times the BoostNet reference's MSDNet; "
                         f"{type(model).__name__} is not an MSDNet backbone")
    dataset = {("cifar", 100): "cifar100", ("cifar", 10): "cifar10",
               ("imagenet", 1000): "imagenet"}.get((cfg["dataset"], cfg["num_classes"]))
    default_size = 32 if cfg["dataset"] == "cifar" else 224
    if (dataset is None or cfg["head_channels"] is not None or cfg["in_channels"] != 3
            or cfg["image_size"] != default_size):
        raise ValueError("the reference builds CIFAR MSDNets with 10 or 100 classes and "
                         "ImageNet ones with 1000, on 3-channel 32x32 / 224x224 images with "
                         f"its own head width; this backbone has {cfg}")
    return types.SimpleNamespace(
        nBlocks=cfg["n_blocks"], stepmode=cfg["step_mode"], step=cfg["step"],
        base=cfg["base"], nChannels=cfg["channels"], growthRate=cfg["growth_rate"],
        grFactor=cfg["gr_factor"], bnFactor=cfg["bn_factor"], nScales=len(cfg["gr_factor"]),
        bottleneck=cfg["bottleneck"], prune=cfg["prune"], reduction=cfg["reduction"],
        dataset=dataset, ensemble_reweight=list(temperatures))


def _import_reference(reference_dir: Path, grad_rescale: bool):
    """(MSDNet class, DynamicNet class) from the checkout at ``reference_dir``."""
    arch = "msdnet_ge" if grad_rescale else "msdnet"
    needed = [reference_dir / "models" / f"{arch}.py", reference_dir / "models" / "dynamic_net.py"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"--reference {reference_dir}: expected a checkout of "
                                f"SHI-Labs/Boosted-Dynamic-Networks, missing {missing}")
    # its modules import each other as `models.*` and `utils.*`
    root = reference_dir.resolve()
    taken = [m for m in ("models", "utils") if m in sys.modules
             and root not in Path(getattr(sys.modules[m], "__file__", "") or "/").resolve().parents]
    if taken:
        raise RuntimeError(f"cannot import the reference: modules {taken} are already "
                           f"imported from elsewhere in this process")
    sys.path.insert(0, str(reference_dir))
    try:
        msdnet = importlib.import_module(f"models.{arch}")
        dynamic_net = importlib.import_module("models.dynamic_net")
    finally:
        sys.path.remove(str(reference_dir))
    return msdnet.MSDNet, dynamic_net.DynamicNet


def reference_step(reference_dir: str | Path, model: nn.Module, method,
                   optimizer: OptimizerConfig, seed: int = 0,
                   device: str | torch.device = "cpu") -> Step:
    """A function (x, y) -> None taking one reference training step of the architecture of
    our ``model`` under ``method`` (BoostNet, joint training of the boosted ensemble) with
    SGD of the ``optimizer`` values, the reference's network on ``device`` (its
    ``cuda_all`` moves the same module)."""
    temperatures = getattr(method, "temperatures", None)
    if temperatures is None or not getattr(method, "joint", False):
        raise ValueError("--reference times BoostNet's reference training step; "
                         f"method {method.name!r} has no counterpart there")
    args = reference_args(model, method.temperatures(model.num_exits))
    msdnet, dynamic_net = _import_reference(Path(reference_dir), method.grad_rescale)
    torch.manual_seed(seed)
    net = dynamic_net(msdnet(args).to(device), args)
    n = args.nBlocks
    groups = [{"params": net.parameters_m(i), "weight_decay": optimizer.weight_decay}
              for i in range(n)]
    sgd = torch.optim.SGD(groups, optimizer.lr, momentum=optimizer.momentum,
                          nesterov=optimizer.nesterov)
    net.train_all()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        preds, ensembles = net.forward_all(x, n - 1)
        # ensembles[0] is the number 0: the first exit's loss is CE(f_1, y)
        loss = sum(F.cross_entropy(p if not torch.is_tensor(e) else p + e.detach(), y)
                   for p, e in zip(preds, ensembles))
        sgd.zero_grad()
        loss.backward()
        sgd.step()

    return step
