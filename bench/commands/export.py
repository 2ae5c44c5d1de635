"""``bench export RUN_DIR --out model.pt``: a finished run as one deployable file;
``--format onnx --out DIR``: as one ONNX graph per exit with manifest.json, checked against
the run's PyTorch model on its first test images."""
from __future__ import annotations

from pathlib import Path

from bench import export
from bench.inference import require
from bench.pipeline.packaging import AGREEMENT_IMAGES, agreement, package, test_images
from bench.pipeline.restore import restore


def _agreement_line(result: dict) -> str:
    shares = ", ".join(f"{k}: {v:.3f}" for k, v in result["agreement"].items())
    return (f"onnxruntime against pytorch on the first {result['images']} test images: same "
            f"exit and class {shares}; largest |F_n difference| "
            f"{result['max_abs_logit_difference']:.2e}")


def main(args) -> int:
    fmt = args.format
    if fmt == "onnx":  # before any work: say which extra is missing
        require("onnx")
        require("onnxruntime")
    restored = restore(Path(args.run_dir))
    out = package(restored, Path(args.out), data_root=args.data_root, fmt=fmt,
                  exporter=args.exporter)
    budgets = ", ".join(f"{b['budget_mmacs']:.4g}" for b in restored.budgets)
    what = (f"{restored.model.num_exits} stage graphs and {export.MANIFEST}" if fmt == "onnx"
            else f"{restored.model.num_exits} exits")
    print(f"wrote {out}: {restored.config.get('run_id', restored.run.run_id)}, {what}, "
          f"fixed budgets (MMACs) {budgets or 'none'}; load it with "
          f"bench.export.load({str(out)!r})")
    if fmt == "onnx":
        images = test_images(restored, args.data_root, AGREEMENT_IMAGES)
        if images is not None:
            print(_agreement_line(agreement(restored, export.load(out), images)))
    return 0
