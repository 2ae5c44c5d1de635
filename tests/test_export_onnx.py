"""bench export --format onnx / bench.export.load(DIR): stage graphs and manifest.json whose
early exits in ONNX Runtime equal the PyTorch export's on the run's test images; a folder
that changed after the export is refused by name."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bench.export
from bench import cli
from bench.pipeline import latency as L
from bench.pipeline import packaging
from bench.pipeline.restore import restore

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/run_fixtures.py
from run_fixtures import finished_run  # noqa: E402

pytest.importorskip("onnxruntime", reason="ONNX export needs the deploy extra")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export-onnx")
    run = finished_run(folder)
    assert cli.main(["latency", str(run), "--batch-sizes", "1,4", "--runtime",
                     "pytorch,onnxruntime", "--warmup", "0", "--repeats", "1"]) == 0
    out, pt = folder / "deploy" / "onnx", folder / "deploy" / "model.pt"
    assert cli.main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    assert cli.main(["export", str(run), "--out", str(pt)]) == 0
    return run, out, pt


def _test_images(run):
    r = restore(run)
    batches, targets = L.test_images(r, L.Settings(batch_size=64), torch.device("cpu"), None)
    return torch.cat(batches), targets


def test_the_folder_holds_one_graph_per_exit_and_a_manifest(exported):
    run, out, _ = exported
    manifest = json.loads((out / bench.export.MANIFEST).read_text())
    assert manifest["format"] == bench.export.ONNX_FORMAT and manifest["opset"] == 17
    assert [s["file"] for s in manifest["stages"]] == ["stage1.onnx", "stage2.onnx",
                                                       "stage3.onnx"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "stage1.onnx",
                                                     "stage2.onnx", "stage3.onnx"]
    first, second = manifest["stages"][:2]
    assert first["inputs"] == ["x"] and first["outputs"][:3] == ["logits1", "raw1", "state1"]
    assert second["inputs"] == ["state1", "raw1"]
    assert len(manifest["budgets"]) == 2 and len(manifest["exit_mmacs"]) == 3
    assert all(len(c["heldout_exit_shares"]) == 3 for c in manifest["curve"])
    assert manifest["class_names"] == ["0", "1", "2", "3"]
    assert manifest["input"]["size"] == [3, 16, 16] and len(manifest["input"]["std"]) == 3
    assert {(m["runtime"], m["batch_size"]) for m in manifest["latency"]} == {
        ("pytorch", 1), ("pytorch", 4), ("onnxruntime", 1), ("onnxruntime", 4)}
    assert manifest["config"]["run_id"] == run.name and len(manifest["sha256"]) == 64


def test_onnx_exits_equal_the_pytorch_export_on_the_test_images(exported):
    run, out, pt = exported
    onnx, torch_model = bench.export.load(out, threads=1), bench.export.load(pt)
    x, _ = _test_images(run)
    for a, b in zip(torch_model(x), onnx(x)):  # F_n of every exit
        assert float((a - b).abs().max()) < 1e-4
    for budget in [None, *onnx.budgets]:
        for batch_size in (None, 1):
            got = onnx.predict(x, budget_mmacs=budget, batch_size=batch_size)
            want = torch_model.predict(x, budget_mmacs=budget, batch_size=batch_size)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])  # agreement 1
            torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-6)


def test_ms_budgets_use_the_latency_of_each_runtime(exported):
    _, out, pt = exported
    onnx, torch_model = bench.export.load(out), bench.export.load(pt)
    ms = onnx.points.measurement(batch_size=1)["exit_ms"]
    assert onnx.points.measurement(batch_size=1)["runtime"] == "onnxruntime"
    x = torch.randn(6, 3, 16, 16)
    _, exits, _ = onnx.predict(x, budget_ms=ms[-1], batch_size=1)
    assert exits.shape == (6,)
    with pytest.raises(bench.export.ExportError, match="below exit 1's measured latency"):
        onnx.predict(x, budget_ms=ms[0] / 2, batch_size=1)
    ms_pt = torch_model.points.measurement(batch_size=4)["exit_ms"]
    torch_model.predict(x, budget_ms=ms_pt[-1], batch_size=4)


def _copy(out, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


def test_a_missing_or_edited_stage_file_is_named(exported, tmp_path):
    _, out, _ = exported
    copy = _copy(out, tmp_path)
    (copy / "stage2.onnx").unlink()
    with pytest.raises(bench.export.ExportError, match=r"stage2.onnx: stage file of exit 2 "
                       "is missing"):
        bench.export.load(copy)
    shutil.copy(out / "stage2.onnx", copy / "stage2.onnx")
    with open(copy / "stage3.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(bench.export.ExportError, match=r"stage3.onnx: .*does not match its "
                       "sha256 in manifest.json"):
        bench.export.load(copy)


def test_an_edited_manifest_fails_its_checksum(exported, tmp_path):
    copy = _copy(exported[1], tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["budgets"][0]["thresholds"][0] = 0.01
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(bench.export.ExportError, match="manifest.json: the content does not "
                       "match its sha256"):
        bench.export.load(copy)
    with pytest.raises(bench.export.ExportError, match="without manifest.json"):
        bench.export.load(tmp_path)


def test_bad_formats_and_a_missing_runtime_are_named(exported, tmp_path, capsys):
    run = exported[0]
    with pytest.raises(SystemExit) as err:
        cli.main(["export", str(run), "--format", "tflite", "--out", str(tmp_path / "x")])
    assert err.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    blocker = tmp_path / "blocker"  # a Python that cannot import onnxruntime
    blocker.mkdir()
    (blocker / "onnxruntime.py").write_text("raise ImportError('no onnxruntime here')\n")
    env = {"PYTHONPATH": f"{blocker}:{ROOT}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "bench", "export", str(run), "--format",
                           "onnx", "--out", str(tmp_path / "never")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert "onnxruntime is not installed" in proc.stderr and ".[deploy]" in proc.stderr
    assert not (tmp_path / "never").exists()


def test_a_folder_that_is_not_an_export_is_not_overwritten(exported, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert cli.main(["export", str(exported[0]), "--format", "onnx", "--out", str(taken)]) == 2
    assert (taken / "notes.txt").read_text() == "mine"


def test_the_deploy_guide_script_agrees_with_pytorch(exported):
    run, out, pt = exported
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" /
                                               "onnx_early_exit.py"), str(run), str(out), str(pt)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all(line.endswith("agreement with PyTorch 1.000")
                                   for line in lines)
    assert len((ROOT / "docs" / "examples" / "onnx_early_exit.py").read_text().splitlines()) <= 30


def test_the_export_checks_itself_against_pytorch(exported):
    run, out, _ = exported
    r = restore(run)
    x, _ = _test_images(run)
    result = packaging.agreement(r, bench.export.load(out), x, batch=16)
    assert result["images"] == len(x) == 40
    assert list(result["agreement"]) == ["last exit"] + [
        f"{b['budget_mmacs']:.4g} MMACs" for b in r.budgets]
    assert set(result["agreement"].values()) == {1.0}
    assert 0 <= result["max_abs_logit_difference"] < 1e-4
