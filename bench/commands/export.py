"""``bench export RUN_DIR --out model.pt``: a finished run as one deployable file."""
from __future__ import annotations

from pathlib import Path

from bench.pipeline.packaging import package
from bench.pipeline.restore import restore


def main(args) -> int:
    restored = restore(Path(args.run_dir))
    out = package(restored, Path(args.out), data_root=args.data_root)
    budgets = ", ".join(f"{b['budget_mmacs']:.4g}" for b in restored.budgets)
    print(f"wrote {out}: {restored.config.get('run_id', restored.run.run_id)}, "
          f"{restored.model.num_exits} exits, fixed budgets (MMACs) {budgets or 'none'}; "
          f"load it with bench.export.load({str(out)!r})")
    return 0
