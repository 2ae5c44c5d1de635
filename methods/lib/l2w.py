"""L2W-DEN (Han et al., ECCV 2022): learning to weight samples for early-exit networks.

A weight prediction network (WPN) g_phi maps each sample's per-exit losses to per-exit
weights; the network trains on the weighted loss, and phi is meta-learned so that one SGD
step on that loss lowers a meta loss in which every sample is judged at the exit that the
budgeted inference rule would send it to (LeapLabTHU/L2W-DEN:tools/main_cifar_DDP.py:287-464).

    v = g_phi(sg(l_b))                        l_b in R^N: per-sample CE of every exit
    w_b = 1 + eps (v_b - mean(v))             mean over exits ('col'), batch ('row') or both ('mat')
    L(theta, w) = sum_n mean_b w_{b,n} CE(f_n(x_b; theta), y_b)

:func:`meta_step` does the reference's steps 1-2 on one (train, meta) pair of half-batches:
the one-step SGD lookahead theta' and the Adam step of phi on the meta loss at theta'. The
real step of theta on L(theta, w) with w from the updated g_phi (step 3) is the trainer's;
:func:`weighted_loss_for_step` gives its loss.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

INPUT_TYPES = ("loss", "conf", "both")  # main_cifar_DDP.py:333-352
CENTRINGS = ("col", "row", "mat")  # main_cifar_DDP.py:355-360


class WeightNet(nn.Module):
    """g_phi: Linear(I, H) -> ReLU -> (L-1) x [Linear(H, H) -> ReLU] -> Linear(H, N) -> tanh
    (models/weight_predict.py:29-40); I = N for 'loss' or 'conf', 2N for 'both'.
    Reference CIFAR settings: H 500, L 1 (README)."""

    def __init__(self, num_exits: int, hidden: int = 500, layers: int = 1,
                 input_type: str = "loss"):
        super().__init__()
        if input_type not in INPUT_TYPES:
            raise ValueError(f"WPN input type {input_type!r} is not one of "
                             f"{', '.join(INPUT_TYPES)}")
        if layers < 1:
            raise ValueError(f"WPN needs layers >= 1, got {layers}")
        self.input_type = input_type
        width = 2 * num_exits if input_type == "both" else num_exits
        blocks: list[nn.Module] = [nn.Linear(width, hidden), nn.ReLU()]
        for _ in range(layers - 1):
            blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
        blocks += [nn.Linear(hidden, num_exits), nn.Tanh()]
        self.mlp = nn.Sequential(*blocks)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.mlp(inputs)  # [B, I] -> [B, N], in (-1, 1)

    def features(self, outs: Sequence[Tensor], targets: Tensor) -> Tensor:
        """The WPN's detached input for logits f_1..f_N: losses, max softmax or both."""
        with torch.no_grad():
            parts = []
            if self.input_type in ("loss", "both"):
                parts.append(sample_losses(outs, targets))  # [B, N]
            if self.input_type in ("conf", "both"):
                parts.append(torch.stack([F.softmax(f, 1).amax(1) for f in outs], 1))  # [B, N]
            return torch.cat(parts, dim=1)


def sample_losses(outs: Sequence[Tensor], targets: Tensor) -> Tensor:
    """Per-sample cross-entropy of every exit: [B, N]."""
    return torch.stack([F.cross_entropy(f, targets, reduction="none") for f in outs], dim=1)


def exit_weights(v: Tensor, epsilon: float, centring: str) -> Tensor:
    """w = 1 + eps (v - mean v) for WPN outputs v [B, N] (main_cifar_DDP.py:355-364).

    'col': mean over exits, per sample (CIFAR); 'row': over the batch, per exit; 'mat': over
    both (ImageNet). The weights average to 1 along the centred axes and can be negative.
    """
    if centring == "col":
        centred = v - v.mean(dim=1, keepdim=True)
    elif centring == "row":
        centred = v - v.mean(dim=0, keepdim=True)
    elif centring == "mat":
        centred = v - v.mean()
    else:
        raise ValueError(f"weight centring {centring!r} is not one of {', '.join(CENTRINGS)}")
    return 1.0 + epsilon * centred


def weighted_loss(losses: Tensor, weights: Tensor) -> Tensor:
    """L = sum_n mean_b w_{b,n} l_{b,n} for [B, N] losses and weights."""
    return (weights * losses).mean(dim=0).sum()


def weighted_loss_for_step(wpn: WeightNet, outs: Sequence[Tensor], targets: Tensor,
                           epsilon: float = 0.8, centring: str = "col",
                           exit_scale: Tensor | None = None) -> Tensor:
    """The real step's loss L(theta, w) with w from g_phi, no gradient to phi (:409-460).
    ``exit_scale`` [N] multiplies each exit's weights (the harness's ``loss_weights``)."""
    with torch.no_grad():
        w = exit_weights(wpn(wpn.features(outs, targets)), epsilon, centring)
    return weighted_loss(sample_losses(outs, targets), _scaled(w, exit_scale))


def _scaled(weights: Tensor, exit_scale: Tensor | None) -> Tensor:
    return weights if exit_scale is None else weights * exit_scale  # [B, N] * [N]


def target_probabilities(num_exits: int, q: float) -> list[float]:
    """MSDNet's budget prior P_k ∝ q^k, k = 1..N (tools/utils.py:122-132, q = index/20)."""
    powers = [q ** k for k in range(1, num_exits + 1)]
    return [p / sum(powers) for p in powers]


def target_exits(confidence: Tensor, q: float) -> Tensor:
    """Each sample's target exit (0-based) [B] from max-softmax confidences [B, N].

    Exit j < N takes the floor(B P_j) samples most confident at exit j among those no earlier
    exit took; the last exit takes the rest (main_cifar_DDP.py:380-400). Ties go to the
    lower sample index (a stable sort; the reference's sort order is unspecified).
    """
    B, N = confidence.shape
    probs = target_probabilities(N, q)
    assigned = torch.full((B,), N - 1, dtype=torch.long, device=confidence.device)
    free = torch.ones(B, dtype=torch.bool, device=confidence.device)
    for j in range(N - 1):
        order = torch.sort(confidence[:, j], descending=True, stable=True).indices
        taken = order[free[order]][: math.floor(B * probs[j])]
        assigned[taken] = j
        free[taken] = False
    return assigned


def meta_loss(outs: Sequence[Tensor], targets: Tensor, q: float = 0.75) -> Tensor:
    """sum_j mean CE over the samples whose target exit is j (empty exits add nothing)."""
    with torch.no_grad():
        confidence = torch.stack([F.softmax(f, 1).amax(1) for f in outs], dim=1)  # [B, N]
        exits = target_exits(confidence, q)
    terms = [F.cross_entropy(f[exits == j], targets[exits == j])
             for j, f in enumerate(outs) if bool((exits == j).any())]
    return torch.stack(terms).sum()


def sgd_lookahead(model: nn.Module, optimizer: torch.optim.Optimizer,
                  params: dict[str, Tensor], grads: dict[str, Tensor]) -> dict[str, Tensor]:
    """theta' = theta - lr d, the step ``optimizer`` (torch SGD) would take with gradients
    ``grads``, kept differentiable (tools/meta.py:22-45):

        g' = g + wd theta;  b = mu buf + (1 - dampening) g' (b = g' before the first step);
        d = g' + mu b with Nesterov, else b

    Hyperparameters come from each parameter's group, buf from the optimizer's state: read,
    never written. ``params`` and ``grads`` are keyed by the model's parameter names; a
    parameter without a gradient or outside the optimizer keeps its value, as in SGD.
    """
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    stepped = dict(params)
    for name, live in model.named_parameters():
        group, grad = group_of.get(id(live)), grads.get(name)
        if group is None or grad is None:
            continue
        if group.get("maximize", False):
            raise ValueError(f"the lookahead assumes a minimising SGD; parameter {name!r} "
                             f"is in a group with maximize=True")
        theta, mu = params[name], group["momentum"]
        d = grad + group["weight_decay"] * theta if group["weight_decay"] else grad
        if mu:
            buf = optimizer.state.get(live, {}).get("momentum_buffer")
            b = d if buf is None else mu * buf + (1.0 - group["dampening"]) * d
            d = d + mu * b if group["nesterov"] else b
        stepped[name] = theta - group["lr"] * d
    return stepped


def meta_step(model: nn.Module, wpn: WeightNet, wpn_optimizer: torch.optim.Optimizer,
              sgd_optimizer: torch.optim.Optimizer, x_train: Tensor, y_train: Tensor,
              x_meta: Tensor, y_meta: Tensor, *, epsilon: float = 0.8, centring: str = "col",
              q: float = 0.75, exit_scale: Tensor | None = None,
              reduce_grads: Callable[[list[Tensor]], None] | None = None) -> Tensor:
    """Steps 1-2 of one L2W update; returns the meta loss (detached).

    1. weights from g_phi (graph to phi) on the train half; the gradient of L(theta, w) with
       a graph (create_graph); the differentiable lookahead theta' of ``sgd_optimizer``;
    2. the meta loss at theta' on the meta half; its gradient w.r.t. phi only, then one
       ``wpn_optimizer`` step (phi's .grad keeps that gradient).

    The model runs through ``torch.func.functional_call`` on detached copies of its
    parameters and of its buffers, so the model, its .grad, its batch-norm statistics and
    the SGD state are left as they were. Runs in fp32 (autocast off); keep it uncompiled.
    Attention (the ViT backbones) runs torch's math kernel here: the fused kernels have no
    second derivative (on CPU: "derivative for _scaled_dot_product_flash_attention_for_cpu_
    backward is not implemented"); the math kernel computes the same function.
    ``exit_scale`` [N] multiplies each exit's weights (``loss_weights``); ``reduce_grads``
    averages phi's gradients in place over DDP ranks before the step (``autograd.grad``
    bypasses DDP's hooks).
    """
    with torch.autocast(device_type=x_train.device.type, enabled=False), \
            sdpa_kernel(SDPBackend.MATH):
        live = {n: p for n, p in model.named_parameters() if p.requires_grad}
        params = {n: p.detach().requires_grad_() for n, p in live.items()}
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        outs = functional_call(model, {**params, **buffers}, (x_train,))
        w = exit_weights(wpn(wpn.features(outs, y_train)), epsilon, centring)  # [B, N]
        loss = weighted_loss(sample_losses(outs, y_train), _scaled(w, exit_scale))
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True,
                                    allow_unused=True)
        stepped = sgd_lookahead(model, sgd_optimizer, params, dict(zip(params, grads)))
        meta_outs = functional_call(model, {**stepped, **buffers}, (x_meta,))
        loss_meta = meta_loss(meta_outs, y_meta, q)
    phi = list(wpn.parameters())
    meta_grads = list(torch.autograd.grad(loss_meta, phi))
    if reduce_grads is not None:
        reduce_grads(meta_grads)
    wpn_optimizer.zero_grad(set_to_none=True)
    for p, g in zip(phi, meta_grads):
        p.grad = g
    wpn_optimizer.step()
    return loss_meta.detach()
