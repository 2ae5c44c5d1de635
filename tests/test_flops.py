import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from bench import backbones, flops
from bench.backbones.common import parameters_per_exit
from bench.backbones.vit import TimmUnavailable


class TwoExit(nn.Module):
    """conv(3->4, 3x3) -> head1; a side conv that only exit 2 reads; conv -> head2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.side = nn.Conv2d(4, 4, 1, bias=False)  # runs in block 1, read only by exit 2
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, stride=2, bias=False)
        self.head1 = nn.Linear(4 * 8 * 8, 10)
        self.head2 = nn.Linear(4 * 4 * 4, 10)
        self.pool = nn.AvgPool2d(2)
        self.num_exits, self.input_size = 2, (3, 8, 8)

    def forward(self, x, num_exits=None):
        h = torch.relu(self.conv1(x))
        side = self.side(h)
        outs = [self.head1(h.flatten(1))]
        if num_exits == 1:
            return outs
        h2 = self.conv2(h + side)
        return outs + [self.head2(h2.flatten(1))]


def test_exact_counts_by_hand():
    model = TwoExit()
    conv1 = 3 * 4 * 9 * 64  # C_in * C_out * k*k * H*W
    side = 4 * 4 * 1 * 64
    head1 = 256 * 10
    conv2 = 4 * 4 * 9 * 16
    head2 = 64 * 10
    # Exit 1 includes the side conv: an early-exit net runs it before it knows it exits.
    assert flops.per_exit(model) == [conv1 + side + head1, conv1 + side + head1 + conv2 + head2]


def test_params_per_exit_counts_executed_modules():
    model = TwoExit()
    first = 3 * 4 * 9 + 4 * 4 + 256 * 10 + 10
    assert flops.params_per_exit(model) == [first, first + 4 * 4 * 9 + 64 * 10 + 10]
    groups = parameters_per_exit(model)
    assert {id(p) for p in groups[1]} == {id(p) for m in (model.conv2, model.head2)
                                         for p in m.parameters()}


def test_chain_tiny_counts_by_hand():
    model = backbones.create("chain_tiny", num_classes=10)
    def block(c_in, c_out, hw):
        # conv MACs + fvcore's eval-mode batch norm (2 per element with affine)
        return c_in * c_out * 9 * hw * hw + 2 * c_out * hw * hw
    def head(c, hw):  # adaptive average pool (1 per input element) + linear
        return c * hw * hw + c * 10
    e1 = block(3, 8, 32) + head(8, 32)
    e2 = e1 + block(8, 16, 16) + head(16, 16)
    e3 = e2 + block(16, 32, 8) + head(32, 8)
    assert flops.per_exit(model) == [e1, e2, e3]


class Unknown(nn.Module):
    num_exits, input_size = 1, (3, 4, 4)

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(48, 2)

    def forward(self, x, num_exits=None):
        return [self.lin(torch.sigmoid(x).flatten(1))]


def test_unexpected_op_is_an_error():
    with pytest.raises(flops.UnsupportedOpError, match="aten::sigmoid"):
        flops.per_exit(Unknown())


def test_gradient_rescale_is_free():
    model = backbones.create("chain_tiny")
    plain = flops.per_exit(model)
    model.grad_rescale = True
    assert flops.per_exit(model) == plain


def test_cost_cache_returns_the_same_counts_and_notices_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = backbones.create("chain_tiny")
    first = flops.per_exit_cached(model)
    assert first == flops.per_exit(model)
    assert (tmp_path / "boostnet-bench" / "costs.json").exists()
    assert flops.per_exit_cached(model) == first
    wider = backbones.create("chain_tiny", channels=(8, 16, 48))
    assert flops.per_exit_cached(wider) == flops.per_exit(wider) != first


# ---- two counters, cross-checked; failures that name the fallback --------------------------

@pytest.mark.parametrize("counter", flops.COUNTERS)
def test_both_counters_count_by_hand(counter):
    conv1, side, head1 = 3 * 4 * 9 * 64, 4 * 4 * 64, 256 * 10
    conv2, head2 = 4 * 4 * 9 * 16, 64 * 10
    assert flops.per_exit(TwoExit(), counter=counter) == [
        conv1 + side + head1, conv1 + side + head1 + conv2 + head2]
    # chain_tiny: batch norm and adaptive average pooling are counted alike by both
    assert flops.per_exit(backbones.create("chain_tiny"), counter=counter) == \
        flops.per_exit(backbones.create("chain_tiny"), counter="fvcore")


def _flop_counter_mode_conv_linear(model, k):
    """Conv + linear MACs to reach exit k by torch's own FlopCounterMode (no jit), which
    counts 2 x MACs for convolutions and matrix products."""
    from torch.utils.flop_counter import FlopCounterMode
    aten = torch.ops.aten
    x = torch.zeros(1, *model.input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, num_exits=k)
    by_op = counter.get_flop_counts()["Global"]
    flops2 = sum(by_op.get(op, 0) for op in (aten.convolution, aten.mm, aten.addmm, aten.bmm))
    assert flops2 % 2 == 0
    return flops2 // 2


RUN_SLOW = bool(os.environ.get("BENCH_SLOW_TESTS"))


@pytest.mark.parametrize("name", backbones.names())
def test_conv_and_linear_macs_agree_with_flop_counter_mode(name):
    """Every registered backbone, per exit: fvcore's conv + linear MACs equal torch's
    FlopCounterMode's, and the whole count equals the torch counter's (the fallback).
    ImageNet-size backbones check exit 1's conv + linear only unless BENCH_SLOW_TESTS=1
    (minutes of fvcore tracing otherwise). The ViTs' attention and layer norm are checked
    against FlopCounterMode and by hand in tests/backbones/test_vit.py."""
    try:
        model = backbones.create(name).eval()
    except TimmUnavailable as e:  # the ViTs need timm, timm torchvision (not on every torch)
        pytest.skip(str(e))
    full = RUN_SLOW or model.input_size[-1] <= 64
    exits = list(range(1, model.num_exits + 1)) if full else [1]
    by_op = flops.fvcore_by_operator(model, exits=exits)
    for k, ops in zip(exits, by_op):
        assert set(ops) <= {"conv", "linear", "batch_norm", "adaptive_avg_pool2d",
                            "upsample_bilinear2d", "layer_norm",
                            "scaled_dot_product_attention"}, ops
        assert ops["conv"] + ops["linear"] == _flop_counter_mode_conv_linear(model, k) > 0
    if full:
        assert [sum(ops.values()) for ops in by_op] == flops.per_exit(model, counter="torch")


def test_fvcore_trace_failure_names_the_fallback(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("torch.jit tracing was removed")
    model = backbones.create("chain_tiny")
    expected = flops.per_exit(model)
    jit_analysis = pytest.importorskip("fvcore.nn.jit_analysis")  # fvcore's own tracer
    monkeypatch.setattr(jit_analysis, "_get_trace_graph", broken)
    with pytest.raises(flops.CounterError, match=r"fvcore could not trace ChainNet.*"
                       r"tracing was removed.*BENCH_FLOP_COUNTER=torch.*FlopCounterMode"):
        flops.per_exit(model)
    monkeypatch.setenv("BENCH_FLOP_COUNTER", "torch")  # the fallback works without jit
    assert flops.per_exit(model) == expected


def test_unknown_counter_is_an_error(monkeypatch):
    monkeypatch.setenv("BENCH_FLOP_COUNTER", "ptflops")
    with pytest.raises(ValueError, match=r"unknown FLOP counter 'ptflops'.*fvcore, torch"):
        flops.per_exit(TwoExit())


class OnlyElementwise(nn.Module):
    """Has parameters, but every op it runs is one both counters deliberately count as 0."""
    num_exits, input_size = 1, (3, 4, 4)

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3, 1, 1))

    def forward(self, x, num_exits=None):
        return [(x * self.scale).flatten(1)]


@pytest.mark.parametrize("counter", flops.COUNTERS)
def test_a_zero_count_is_an_error_not_a_result(counter):
    with pytest.raises(flops.CounterError, match=r"counted \[0\] MACs for OnlyElementwise"):
        flops.per_exit(OnlyElementwise(), counter=counter)


def test_torch_counter_rejects_undecided_ops():
    with pytest.raises(flops.UnsupportedOpError, match="sigmoid"):
        flops.per_exit(Unknown(), counter="torch")


# ---- quiet output: fvcore's jit deprecation silenced at our boundary only -----------------

def test_our_warnings_pass_the_fvcore_filter():
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with flops._quiet_fvcore():
            warnings.warn("`torch.jit.script` is deprecated. Please switch to torch.compile",
                          FutureWarning)
            warnings.warn("a warning of our own", UserWarning)
    assert [str(w.message) for w in caught] == ["a warning of our own"]
    assert warnings.filters == before


def test_dry_run_prints_no_python_warning(tmp_path):
    """The quickstart's dry run, with an empty cost cache (so fvcore is imported and traces),
    in a fresh interpreter with Python's default warning filters."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "suites/quickstart.yaml",
                           "--dry-run", "--results", str(tmp_path / "results")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "MMACs" in proc.stdout and (tmp_path / "cache" / "boostnet-bench" / "costs.json").exists()
    assert not re.search(r"\w*Warning\b", proc.stderr), proc.stderr
