"""Real early exits: decisions equal the simulation from a full forward; nothing past a
sample's exit runs for it."""
from collections import Counter

import pytest
import torch

import methods
from bench import backbones, evaluate
from bench.backbones.common import _leaf_modules, executed_modules
from bench.inference.early_exit import early_exit, simulate

torch.set_num_threads(1)

SMALL = {  # every small registered backbone (RANet narrowed), 10 classes
    "chain_tiny": {},
    "msdnet_tiny": {},
    "ranet8_cifar": {"channels": 4, "growth_rate": 4, "step": 2},
}


def _model(name, **overrides):
    torch.manual_seed(0)
    model = backbones.create(name, num_classes=10, **overrides)
    with torch.no_grad():  # non-trivial batch-norm running statistics
        for _ in range(2):
            model(torch.randn(16, *model.input_size))
    return model.eval()


def _random_thresholds(preds, seed):
    """Per exit, a random threshold half-way between two neighbouring confidences of the
    full forward, so that no sample sits within rounding of it (the per-sample logits of a
    sub-batch may differ from the full batch's in the last bit)."""
    g = torch.Generator().manual_seed(seed)
    conf = evaluate.confidences(preds)[0]
    out = []
    for c in conf[:-1]:
        s = c.unique()  # sorted
        i = int(torch.randint(0, len(s) - 1, (1,), generator=g))
        out.append(float((s[i] + s[i + 1]) / 2))
    return out


def _check_against_simulation(model, x, combine, seeds, batch_sizes):
    with torch.no_grad():
        full = model(x)
    preds = combine(full)
    used = set()
    for seed in seeds:
        thresholds = _random_thresholds(preds, seed)
        classes, exits, conf = simulate(full, combine, thresholds)
        used |= set(exits.tolist())
        for batch_size in batch_sizes:
            real = early_exit(model, combine, thresholds, x, batch_size=batch_size)
            assert torch.equal(real[0], classes) and torch.equal(real[1], exits)
            torch.testing.assert_close(real[2], conf, rtol=1e-5, atol=1e-6)
    assert len(used) >= 2  # the random thresholds did send samples to several exits


@pytest.mark.parametrize("name", sorted(SMALL))
def test_decisions_equal_simulation_from_full_forward(name):
    model = _model(name, **SMALL[name])
    x = torch.randn(24, *model.input_size)
    combine = methods.create("boostnet").combine
    _check_against_simulation(model, x, combine, seeds=range(4), batch_sizes=[None, 5, 1])


def test_decisions_equal_simulation_msdnet10_cifar():
    torch.manual_seed(0)
    model = backbones.create("msdnet10_cifar", num_classes=100).eval()
    x = torch.randn(12, *model.input_size)
    _check_against_simulation(model, x, methods.create("boostnet").combine, seeds=[0],
                              batch_sizes=[None, 1])


def test_simulation_is_bench_evaluate_rule():
    model = _model("msdnet_tiny")
    x = torch.randn(32, 3, 32, 32)
    combine = methods.create("boostnet", temperature=0.7).combine
    with torch.no_grad():
        full = model(x)
    thresholds = _random_thresholds(combine(full), 3)
    classes, exits, conf = simulate(full, combine, thresholds)
    assert torch.equal(exits, evaluate.assign_exits(combine(full), thresholds + [-1.0]))
    all_conf, all_pred = evaluate.confidences(combine(full))
    assert torch.equal(classes, all_pred[exits, torch.arange(32)])
    assert torch.equal(conf, all_conf[exits, torch.arange(32)])


def _groups(model):
    """Leaf module -> 0-based exit at which it first runs (executed_modules)."""
    group, seen = {}, set()
    for n in range(1, model.num_exits + 1):
        for m in executed_modules(model, n, model.input_size):
            if id(m) not in seen:
                seen.add(id(m))
                group[id(m)] = n - 1
    return group


def _count_samples(model):
    """Forward hooks counting, per leaf module, the samples it processed."""
    counts = Counter()

    def note(module, inputs, _output):
        counts[id(module)] += next(t for t in inputs if isinstance(t, torch.Tensor)).shape[0]

    return counts, [m.register_forward_hook(note) for m in _leaf_modules(model)]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_nothing_past_a_samples_exit_runs_for_it(name):
    model = _model(name, **SMALL[name])
    x = torch.randn(24, *model.input_size)
    combine = methods.create("boostnet").combine
    with torch.no_grad():
        thresholds = _random_thresholds(combine(model(x)), 1)
    group = _groups(model)
    counts, hooks = _count_samples(model)
    try:
        _, exits, _ = early_exit(model, combine, thresholds, x)  # one batch
        # a module first run for exit g processes exactly the samples that reach exit g
        reach = [(exits >= g).sum().item() for g in range(model.num_exits)]
        assert counts and all(counts[i] == reach[g] for i, g in group.items())
        assert set(counts) <= set(group)
        # one sample at a time: exactly the modules up to its own exit ran for it
        for i in range(6):
            counts.clear()
            _, (e,), _ = early_exit(model, combine, thresholds, x[i:i + 1])
            assert set(counts) == {m for m, g in group.items() if g <= e}
            assert set(counts.values()) == {1}
    finally:
        for h in hooks:
            h.remove()
    assert len(set(exits.tolist())) >= 2


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_is_begin_and_advance(name):
    model = _model(name, **SMALL[name])
    x = torch.randn(6, *model.input_size)
    with torch.no_grad():
        full = model(x)
        state = model.begin(x)
        assert state.exits_done == 0 and state.batch_size() == 6
        for n in range(model.num_exits):
            f, state = model.advance(state)
            assert torch.equal(f, full[n]) and state.exits_done == n + 1
            if n == 0:  # keep samples 4, 1, 3 (an index) or a mask: same rows
                keep = torch.tensor([4, 1, 3])
                mask = torch.tensor([False, True, False, True, True, False])
                sub_i, sub_m = state.select(keep), state.select(mask)
                g_i, _ = model.advance(sub_i)
                g_m, _ = model.advance(sub_m)
                torch.testing.assert_close(g_i, model(x)[1][keep], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(g_m, model(x)[1][mask], rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="exits .* computed already"):
            model.advance(state)


def test_select_keeps_channels_last():
    model = _model("msdnet_tiny")
    state = model.begin(torch.randn(4, 3, 32, 32))
    _, state = model.advance(state)
    kept = state.select(torch.tensor([True, False, True, True]))
    assert kept.batch_size() == 3
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in kept.tensors)


def test_callable_score_and_raw_logits():
    model = _model("chain_tiny")
    x = torch.randn(20, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
    thresholds = _random_thresholds(full, 2)
    max_softmax = lambda z: evaluate.confidences(z)[0]  # noqa: E731
    a = simulate(full, None, thresholds, score=max_softmax)
    b = early_exit(model, None, thresholds, x, score=max_softmax, batch_size=3)
    c = early_exit(model, None, thresholds, x)
    assert torch.equal(a[1], b[1]) and torch.equal(a[1], c[1]) and torch.equal(a[0], c[0])


def test_bad_input_named():
    model = _model("chain_tiny").train()
    x = torch.randn(3, 3, 32, 32)
    with pytest.raises(ValueError, match="thresholds has 1 values .* expected 3"):
        early_exit(model, None, [0.5], x)
    with pytest.raises(ValueError, match="score must be"):
        early_exit(model, None, [0.5, 0.5], x, score="entropy?")
    with pytest.raises(ValueError, match="batch_size"):
        early_exit(model, None, [0.5, 0.5], x, batch_size=0)
    classes, exits, conf = early_exit(model, None, [2.0, 2.0, 2.0], x)  # nobody passes
    assert exits.tolist() == [2, 2, 2] and model.training  # the mode is restored
    empty = early_exit(model, None, [0.5, 0.5], x[:0])
    assert [t.numel() for t in empty] == [0, 0, 0]
