"""Every registered backbone, and every method on a small one, exports as ONNX stage graphs
whose real early exits in ONNX Runtime equal PyTorch's, with F_n equal up to float
rounding."""
import sys

import pytest
import torch

import methods
from bench import backbones, evaluate
from bench.errors import UsageError
from bench.inference import MissingExtra, OnnxModel, early_exit, export_stages, require
from bench.inference.onnx_export import graph_inputs
from inference_models import installed_model

pytest.importorskip("onnxruntime", reason="ONNX export needs the deploy extra")
torch.set_num_threads(1)
LARGE = ("imagenet", "deit", "vit_base")  # 224 px inputs: 5-30 s each on a 2-core CPU


def _every_backbone():
    return [pytest.param(n, marks=pytest.mark.slow) if any(k in n for k in LARGE) else n
            for n in backbones.names()]


def _model(name, method="boostnet", num_classes=10):
    return installed_model(name, method, batch=4, num_classes=num_classes)


def _onnx(model, meth, folder, exporter="torchscript"):
    stages = export_stages(model, meth.combine, folder, model.input_size, exporter=exporter)
    manifest = {"stages": stages, "exit_mmacs": [1.0] * model.num_exits, "budgets": [],
                "curve": []}
    return OnnxModel(folder, manifest, threads=1), stages


def _midpoint_thresholds(preds):
    """Per exit but the last, half-way between the two middle confidences: about half the
    images leave at each exit, none within rounding of a threshold."""
    out = []
    for c in evaluate.confidences(preds)[0][:-1]:
        s = c.sort().values
        k = len(s) // 2
        out.append(float((s[k - 1] + s[k]) / 2))
    return out


def _check_equal(model, meth, onnx, x):
    with torch.no_grad():
        want = meth.combine(model(x))
    got = onnx(x)
    for a, b in zip(want, got):  # F_n within float rounding, relative to its size
        assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(a.abs().max()))
    thresholds = _midpoint_thresholds(want)
    for batch_size in (None, 1):
        real = early_exit(model, meth.combine, thresholds, x, batch_size=batch_size)
        onnx_real = onnx.early_exit(thresholds + [-1.0], x, batch_size=batch_size)
        assert torch.equal(onnx_real[0], real[0]) and torch.equal(onnx_real[1], real[1])
        torch.testing.assert_close(onnx_real[2], real[2], rtol=1e-5, atol=1e-6)
    return real


@pytest.mark.parametrize("name", _every_backbone())
def test_every_backbone_exports_and_exits_as_in_pytorch(name, tmp_path):
    model, meth = _model(name)
    onnx, stages = _onnx(model, meth, tmp_path)
    assert [s["exit"] for s in stages] == list(range(1, model.num_exits + 1))
    assert stages[0]["inputs"] == ["x"] and stages[-1]["outputs"][:1] == [
        f"logits{model.num_exits}"]
    x = torch.randn(4, *model.input_size)
    real = _check_equal(model, meth, onnx, x)
    assert len(set(real[1].tolist())) >= 2  # images left at different exits


@pytest.mark.parametrize("method", methods.names())
def test_every_method_exports_on_a_small_backbone(method, tmp_path):
    model, meth = _model("msdnet_tiny", method)
    onnx, _ = _onnx(model, meth, tmp_path)
    _check_equal(model, meth, onnx, torch.randn(8, 3, 32, 32))


def test_inputs_a_stage_does_not_read_are_left_out_of_its_graph(tmp_path):
    model, meth = _model("chain_tiny")  # F_n = t F_{n-1} + f_n reads the raw logits
    _, stages = _onnx(model, meth, tmp_path)
    assert stages[1]["inputs"] == ["state1", "raw1"] == graph_inputs(tmp_path / "stage2.onnx")
    joint, jm = _model("chain_tiny", "joint")  # F_n = f_n reads none
    _, stages = _onnx(joint, jm, tmp_path / "joint")
    assert stages[1]["inputs"] == ["state1"] and stages[2]["inputs"] == ["state2"]


@pytest.mark.slow
def test_the_dynamo_exporter_gives_the_same_graphs(tmp_path):
    model, meth = _model("chain_tiny")
    onnx, _ = _onnx(model, meth, tmp_path, exporter="dynamo")
    _check_equal(model, meth, onnx, torch.randn(6, 3, 32, 32))


def test_without_the_extra_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install -e '\.\[deploy\]'") as err:
        require("onnx")
    assert isinstance(err.value, UsageError)  # the CLI says it in one line, exit code 2


def test_an_unknown_exporter_is_named(tmp_path):
    model, meth = _model("chain_tiny")
    with pytest.raises(ValueError, match="torchscript, dynamo.*'jit'"):
        export_stages(model, meth.combine, tmp_path, model.input_size, exporter="jit")
