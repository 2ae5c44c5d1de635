"""ONNX Runtime with real early exits: images that leave are not run by later stages; the
decisions follow bench.evaluate's rule (max softmax in float64)."""
import pytest
import torch

import methods
from bench import backbones, evaluate
from bench.inference import OnnxModel, export_stages

pytest.importorskip("onnxruntime", reason="ONNX Runtime needs the deploy extra")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=5, image_size=16).eval()
    meth = methods.create("boostnet")
    folder = tmp_path_factory.mktemp("stages")
    stages = export_stages(model, meth.combine, folder, model.input_size)
    return OnnxModel(folder, {"stages": stages, "exit_mmacs": [1.0, 2.0, 3.0],
                              "budgets": [], "curve": []}, threads=1)


class Counting:
    """A stand-in session that counts the rows each stage is given."""

    def __init__(self, session, rows):
        self.session, self.rows = session, rows

    def run(self, outputs, feeds):
        self.rows.append(len(next(iter(feeds.values()))))
        return self.session.run(outputs, feeds)


def test_images_that_left_are_not_run_by_later_stages(onnx):
    x = torch.randn(10, 3, 16, 16)
    conf = evaluate.confidences(onnx(x))[0]
    first = conf[0].sort().values
    t1 = float((first[5] + first[6]) / 2)  # six stay after exit 1 (four leave)
    rows = []
    onnx.sessions = [Counting(s, rows) for s in onnx.sessions]
    try:
        classes, exits, scores = onnx.early_exit([t1, 2.0, -1.0], x)  # nobody leaves at 2
    finally:
        onnx.sessions = [s.session for s in onnx.sessions]
    assert rows == [10, 6, 6]
    assert exits.tolist() == [0 if c >= t1 else 2 for c in conf[0].tolist()]
    preds = onnx(x)
    for i, e in enumerate(exits.tolist()):
        assert classes[i] == preds[e][i].argmax() and scores[i] == pytest.approx(conf[e][i])


def test_batches_one_after_another_give_the_same_decisions(onnx):
    x = torch.randn(9, 3, 16, 16)
    t = [float(c.median()) for c in evaluate.confidences(onnx(x))[0][:-1]] + [-1.0]
    whole = onnx.early_exit(t, x)
    for size in (1, 4):
        part = onnx.early_exit(t, x.numpy(), batch_size=size)  # an array works too
        assert all(torch.equal(a, b) for a, b in zip(whole, part))
    assert [v.dtype for v in whole] == [torch.int64, torch.int64, torch.float64]


def test_bad_thresholds_and_batch_sizes_are_named(onnx):
    with pytest.raises(ValueError, match="2 values for a model with 3 exits"):
        onnx.early_exit([0.5, 0.5], torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        onnx.early_exit([0.5, 0.5, -1], torch.randn(2, 3, 16, 16), batch_size=0)
    empty = onnx.predict(torch.randn(0, 3, 16, 16))
    assert [len(v) for v in empty] == [0, 0, 0]
