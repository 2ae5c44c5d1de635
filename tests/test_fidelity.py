"""Step-level equivalence with the reference implementations (issue 17).

From a reference checkpoint and the committed batches, K = 5 SGD steps (lr 0.1, momentum
0.9, weight decay 1e-4, train-mode batch norm) of ours must retrace the reference's
recorded trajectory: the loss of every exit at every step, and every parameter and buffer
after the last step, within a relative 1e-4 (float32, CPU).

- ``boostnet`` (temperature 0.5, gradient rescaling) against BoostNet's ``msdnet_ge`` trained
  by its ``train_cifar100.py`` loss (DynamicNet, ``--ensemble_reweight 0.5``);
- ``joint`` against MSDNet-PyTorch's ``msdnet`` trained by its ``main.py`` (summed CE).
How the reference side was recorded: docs/checkpoints.md.
"""
from pathlib import Path

import pytest
import torch

import methods
from bench import checkpoints

torch.set_num_threads(1)

DATA = Path(__file__).parent / "data" / "reference"
BACKBONE, CONFIG = "msdnet_tiny", {"n_blocks": 4, "head_channels": 16}
TOLERANCE = 1e-4
# method -> (options, initial checkpoint, expected outputs, parameters after the K steps)
CASES = {
    "boostnet": ({"temperature": 0.5}, "boostnet_msdnet_ge_epoch0.pth",
                 "boostnet_msdnet_ge_expected.pt", "boostnet_msdnet_ge_after5steps.pth"),
    "joint": ({}, "kalviny_msdnet_epoch0.pth.tar", "kalviny_msdnet_expected.pt",
              "kalviny_msdnet_after5steps.pth"),
}


def sgd_steps(model, method, batches):
    """K training steps as the harness takes them; returns the per-exit losses [K, N]."""
    method.prepare(model)  # installs (or removes) gradient rescaling
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4,
                                nesterov=False)
    model.train()
    losses = []
    for x, y in batches:
        outs = model(x)
        loss = method.loss(outs, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(method.sample_losses([o.detach() for o in outs], y).mean(1))
    return torch.stack(losses).double()


def relative_differences(ours: dict, reference: dict) -> dict[str, float]:
    """Per tensor: max |ours - ref| / max |ref| (exact equality for integer buffers)."""
    assert ours.keys() == reference.keys()
    out = {}
    for key, ref in reference.items():
        if not ref.is_floating_point():
            out[key] = 0.0 if torch.equal(ours[key], ref) else float("inf")
            continue
        scale = ref.abs().max().clamp_min(1e-12)
        out[key] = ((ours[key] - ref).abs().max() / scale).item()
    return out


def batches():
    data = torch.load(DATA / "batches.pt", weights_only=True)
    return list(zip(data["x_train"], data["y_train"]))


def replay(name, **option_changes):
    options, initial, expected, final = CASES[name]
    model = checkpoints.load(DATA / initial, BACKBONE, **CONFIG)
    method = methods.create(name, **{**options, **option_changes})
    losses = sgd_steps(model, method, batches())
    reference = torch.load(DATA / expected, weights_only=True)["step_losses"]
    after = checkpoints.load(DATA / final, BACKBONE, **CONFIG).state_dict()
    return losses, reference, model.state_dict(), after


@pytest.mark.parametrize("name", sorted(CASES))
def test_trajectory_matches_the_reference(name):
    losses, reference, params, expected = replay(name)
    assert losses.shape == reference.shape == (5, 4)
    loss_rel = ((losses - reference).abs() / reference.abs()).max().item()
    assert loss_rel < TOLERANCE
    worst = max(relative_differences(params, expected).items(), key=lambda kv: kv[1])
    assert worst[1] < TOLERANCE, worst


@pytest.mark.parametrize("change", [{"grad_rescale": False}, {"temperature": 1.0}])
def test_boostnet_trajectory_is_sensitive_to_each_technique(change):
    """The comparison is sharp: switching off gradient rescaling, or another temperature,
    moves the trajectory far outside the tolerance."""
    losses, reference, params, expected = replay("boostnet", **change)
    loss_rel = ((losses - reference).abs() / reference.abs()).max().item()
    param_rel = max(relative_differences(params, expected).values())
    assert max(loss_rel, param_rel) > 100 * TOLERANCE


def test_boostnet_ensemble_matches_dynamicnet():
    """combine() gives the reference DynamicNet.forward's F_n = f_n + 0.5 F_{n-1}."""
    expected = torch.load(DATA / "boostnet_msdnet_ge_expected.pt", weights_only=True)
    x = torch.load(DATA / "batches.pt", weights_only=True)["x_eval"]
    model = checkpoints.load(DATA / "boostnet_msdnet_ge_epoch0.pth", BACKBONE, **CONFIG).eval()
    with torch.no_grad():
        ensemble = torch.stack(methods.create("boostnet", temperature=0.5).combine(model(x)))
    assert (ensemble - expected["ensemble"]).abs().max().item() < TOLERANCE
