"""RANet: structure, early exit, per-exit cost and the gradient-rescaling rule."""
from __future__ import annotations


import pytest
import torch

from bench import backbones
from bench.backbones.common import parameters_per_exit
from bench.backbones.ranet import RANet, ranet8_cifar
from bench.flops import params_per_exit, per_exit

torch.set_num_threads(1)


# Cumulative fvcore MACs / parameters to produce exits 1..8, one image. Checked against the
# reference (SHI-Labs/Boosted-Dynamic-Networks models/ranet.py built with the arguments of
# ranet_scripts/train_*_any.sh, counted with the same bench.flops functions through a
# wrapper that calls its forward(x, stage=k-1)): parameter shapes identical module by
# module, outputs identical with the same weights, and these numbers identical.
# fvcore counts bilinear interpolation (4 per output element; 7.28 MMACs of the CIFAR
# total) and BatchNorm; the reference's own op_counter counts neither and gets 15.83 ..
# 95.00 MMACs for CIFAR with the same parameter counts.
CIFAR_MACS = [15901184, 31414272, 45515904, 51241600, 63508544, 66518592, 98180352,
              102927616]
CIFAR_PARAMS = [482052, 1097000, 1511586, 1914854, 2223662, 2523154, 2952906, 3354710]
IMAGENET_MACS = [434240000, 888086016, 1158121432, 1357266904, 2315747952, 2624364436,
                 3339214460, 3437204604]
IMAGENET_PARAMS = [14083432, 48077136, 60103248, 78659176, 100951482, 130170440,
                   139095138, 149144186]


def small(**overrides) -> RANet:
    """The CIFAR architecture with narrow layers: 8 exits, fast on a CPU."""
    torch.manual_seed(0)
    return ranet8_cifar(num_classes=5, **{"channels": 4, "growth_rate": 4, "step": 2,
                                          **overrides})


def test_registered_configs():
    assert {"ranet8_cifar", "ranet_imagenet"} <= set(backbones.names())
    model = backbones.create("ranet8_cifar", num_classes=100)
    assert (model.num_exits, model.input_size, model.grad_rescale) == (8, (3, 32, 32), False)
    logits = model(torch.randn(2, 3, 32, 32))
    assert [tuple(f.shape) for f in logits] == [(2, 100)] * 8


def test_num_exits_returns_prefix_and_runs_nothing_later():
    model = small().eval()
    ran = []
    for ii, flow in enumerate(model.scale_flows):
        for j, block in enumerate(flow):
            block.register_forward_pre_hook(lambda m, a, name=f"flow{ii}.{j}": ran.append(name))
    for k, head in enumerate(model.classifier):
        head.register_forward_pre_hook(lambda m, a, name=f"head{k}": ran.append(name))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
        for k in range(1, 9):
            ran.clear()
            out = model(x, num_exits=k)
            assert len(out) == k
            assert all(torch.equal(a, b) for a, b in zip(out, full))
            if k == 1:
                assert ran == ["flow0.0", "head0"]
            if k == 3:  # flow 1: two fusion blocks (reading flow 0), then exit 3
                assert ran == ["flow0.0", "head0", "flow0.1", "head1",
                               "flow1.0", "flow1.1", "flow1.2", "head2"]
    with pytest.raises(ValueError, match="num_exits"):
        model(x, num_exits=9)


def test_cifar_params_and_macs_match_reference():
    model = backbones.create("ranet8_cifar", num_classes=100)
    assert params_per_exit(model) == CIFAR_PARAMS
    assert per_exit(model) == pytest.approx(CIFAR_MACS, rel=1e-6)


@pytest.fixture(scope="module")
def imagenet_model():
    torch.manual_seed(0)
    return backbones.create("ranet_imagenet", num_classes=1000)


def test_imagenet_params_match_reference(imagenet_model):
    assert (imagenet_model.num_exits, imagenet_model.input_size) == (8, (3, 224, 224))
    assert params_per_exit(imagenet_model) == IMAGENET_PARAMS


@pytest.mark.slow  # 35-60 s of fvcore tracing on one CPU thread (CIFAR: about 10 s)
def test_imagenet_macs_match_reference(imagenet_model):
    assert per_exit(imagenet_model) == pytest.approx(IMAGENET_MACS, rel=1e-6)


def test_overrides_and_their_errors():
    # CIFAR budgeted "model1" of ranet_scripts/train_cifar100_batch.sh; cumulative
    # parameters checked against the reference built with the same arguments.
    model = backbones.create("ranet8_cifar", num_classes=100, step_mode="lin_grow", step=2,
                             scale_list="1-2-3", gr_factor=[4, 2, 1], bn_factor=(4, 2, 1))
    assert model.num_exits == 6
    assert params_per_exit(model) == [358660, 899880, 1304995, 1800711, 2188193, 2617261]

    assert ranet8_cifar().num_exits == 8 and ranet8_cifar(n_blocks=3).num_exits == 9
    with pytest.raises(ValueError, match="step_mode.*'even' or 'lin_grow'"):
        ranet8_cifar(step_mode="lg")
    with pytest.raises(ValueError, match="scale_list.*as long as gr_factor"):
        ranet8_cifar(scale_list=[1, 2, 3])
    with pytest.raises(ValueError, match="scale_list.*non-decreasing"):
        ranet8_cifar(scale_list=[1, 3, 2, 3])
    with pytest.raises(ValueError, match="gr_factor.*positive integers"):
        ranet8_cifar(gr_factor="4-x-1-1")
    with pytest.raises(ValueError, match="'step' must be a positive integer"):
        ranet8_cifar(step=0)
    with pytest.raises(ValueError, match="compress_factor"):
        ranet8_cifar(compress_factor=0.0)
    with pytest.raises(TypeError, match="unknown RANet argument.*bottleneck"):
        ranet8_cifar(bottleneck=True)


def _autograd_nodes(outputs):
    seen, stack = set(), [o.grad_fn for o in outputs]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(f for f, _ in fn.next_functions)
    return {type(fn).__name__ for fn in seen}


def test_grad_rescale_gives_mean_over_dependent_losses():
    model = small().double().train()  # float64: the comparison below is then exact to 1e-10
    n = model.num_exits
    base = []  # FirstLayer's outputs: shared features that every exit depends on
    model.FirstLayer.register_forward_hook(lambda m, a, out: base.__setitem__(slice(None), out))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    weights = [torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
               for i in range(n)]
    params = list(model.parameters())

    def losses():
        outs = model(x)
        return outs, [(w * f).sum() for w, f in zip(weights, outs)]

    outs, plain = losses()
    assert "GradientRescaleBackward" not in _autograd_nodes(outs)
    per_loss = [torch.autograd.grad(loss, params + base, retain_graph=True, allow_unused=True)
                for loss in plain]

    model.grad_rescale = True
    outs_r, rescaled = losses()
    assert all(torch.equal(a, b) for a, b in zip(outs, outs_r))  # forward unchanged
    assert "GradientRescaleBackward" in _autograd_nodes(outs_r)
    got = torch.autograd.grad(sum(rescaled), params + base)

    # Every base feature is read by all 8 exits, through paths with different rescale
    # factors (flow ii reads base[ii] directly); its gradient is the mean of all 8.
    for j in range(len(params), len(params) + len(base)):
        expected = sum(g[j] for g in per_loss) / n
        torch.testing.assert_close(got[j], expected, rtol=1e-9, atol=1e-12)

    # Each parameter: gradient = mean over the losses that depend on it, and those are
    # L_s..L_N for a parameter first run for exit s, L_s alone for classifier s.
    segment = {id(p): s for s, group in enumerate(parameters_per_exit(model)) for p in group}
    heads = {id(p): s for s, head in enumerate(model.classifier) for p in head.parameters()}
    for j, p in enumerate(params):
        deps = [i for i in range(n) if per_loss[i][j] is not None]
        s = segment[id(p)]
        assert deps == ([s] if id(p) in heads else list(range(s, n)))
        expected = sum(per_loss[i][j] for i in deps) / len(deps)
        torch.testing.assert_close(got[j], expected, rtol=1e-9, atol=1e-12)

