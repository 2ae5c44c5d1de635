"""bench.engine.cuda_graphs: when a step is recorded (``decide``), and the bookkeeping of a
recorded step (warm-up, the odd batch, recording again when the optimizer's constants
change), checked on a CPU with a recorder that re-runs the step at each replay. The GPU
test (the real recording against eager steps) is in tests/pipeline/test_step_graphs.py."""
import pytest
import torch

from bench.engine import cuda_graphs
from bench.engine.cuda_graphs import CudaGraphsRefused, GraphedStep, decide
from graph_fixtures import ReRun


def test_false_and_auto_off_cuda_are_eager_without_a_word():
    assert decide(False, "cuda") == (False, None)
    assert decide("auto", "cpu") == (False, None)
    assert decide("auto", "cpu", ["anything"]) == (False, None)


def test_true_off_cuda_is_refused_naming_the_key_and_the_device():
    with pytest.raises(CudaGraphsRefused, match=r"training.cuda_graphs is true, but run 3 "
                                                r"trains on cpu: CUDA graphs need a CUDA"):
        decide(True, torch.device("cpu"), who="run 3")


def test_on_cuda_auto_records_unless_something_is_against_it():
    assert decide("auto", "cuda:1") == (True, None)
    assert decide(True, "cuda") == (True, None)
    use, note = decide("auto", "cuda", ["method 'l2w': it branches"], who="method 'l2w'")
    assert not use and note == "method 'l2w': eager steps, not CUDA graphs (method 'l2w': " \
                               "it branches)"
    with pytest.raises(CudaGraphsRefused, match="method 'l2w' cannot be recorded as a CUDA "
                                                "graph: method 'l2w': it branches"):
        decide(True, "cuda", ["method 'l2w': it branches"], who="method 'l2w'")


def test_a_setting_that_is_none_of_the_three_is_an_error():
    with pytest.raises(ValueError, match="expected true, false or auto, found 'yes'"):
        decide("yes", "cuda")


def test_the_settings_that_rule_out_a_recording():
    assert cuda_graphs.setting_blockers("bf16", False, 1) == []
    assert cuda_graphs.setting_blockers("fp32", False, 1) == []
    found = cuda_graphs.setting_blockers("fp16", True, 2)
    assert len(found) == 3 and "gradient scaler" in found[0] and "compile" in found[1] \
        and "several processes" in found[2]


class Counter:
    """A "training step" on a CPU: w <- w - lr * mean(x) * y, returning [w]; it counts the
    steps it really took and the lr is the optimizer-like constant."""

    def __init__(self):
        self.w, self.lr, self.eager_calls, self.recorded_calls = torch.zeros(1), 1.0, 0, 0

    def eager(self, x, y):
        self.eager_calls += 1
        return self._step(x, y)

    def record(self, x, y):
        self.recorded_calls += 1
        return self._step(x, y)

    def _step(self, x, y):
        self.w -= self.lr * x.mean() * y.float().mean()
        return self.w.clone()


def graphed(counter, warmup=2):
    prepared = []
    step = GraphedStep(counter.eager, counter.record, hyperparameters=lambda: counter.lr,
                       after_replay=lambda: None, prepare=lambda: prepared.append(1),
                       device="cpu", recorder=ReRun(), warmup=warmup)
    return step, prepared


def batches(n, size=4):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, generator=g), torch.randint(0, 5, (size,), generator=g))
            for _ in range(n)]


def test_every_batch_is_stepped_once_warm_up_and_recording_batch_included():
    data = batches(6)
    reference, counter = Counter(), Counter()
    step, prepared = graphed(counter)
    for x, y in data:
        expected = reference.eager(x, y)
        assert torch.equal(step(x, y), expected)
    assert counter.eager_calls == 2  # the warm-up
    assert counter.recorded_calls == 4 and step.replays == 4 and step.recordings == 1
    assert prepared == [1]


def test_a_batch_of_another_shape_runs_eagerly_and_the_graph_goes_on():
    data = batches(4) + batches(1, size=3) + batches(2)
    reference, counter = Counter(), Counter()
    step, _ = graphed(counter, warmup=1)
    for x, y in data:
        assert torch.equal(step(x, y), reference.eager(x, y))
    assert counter.eager_calls == 2 and step.replays == 5 and step.recordings == 1


def test_a_new_learning_rate_is_recorded_again_from_the_next_step():
    data = batches(6)
    reference, counter = Counter(), Counter()
    step, prepared = graphed(counter, warmup=1)
    for i, (x, y) in enumerate(data):
        if i == 3:
            counter.lr = reference.lr = 0.1
        assert torch.equal(step(x, y), reference.eager(x, y))
    assert step.recordings == 2 and step.recorded_with == 0.1 and prepared == [1, 1]


def test_the_static_inputs_are_copies_and_the_output_is_not_the_recorded_tensor():
    counter = Counter()
    step, _ = graphed(counter, warmup=0)
    (x, y), = batches(1)
    out = step(x, y)
    assert step.static[0] is not x and torch.equal(step.static[0], x)
    assert out is not step.recorder.outputs
