"""``bench latency RUN_DIR``: time a finished run with real early exits; writes
RUN_DIR/latency.json and prints per-exit and per-budget tables."""
from __future__ import annotations

from pathlib import Path

from bench import store
from bench.pipeline.latency import Settings, measure
from bench.pipeline.restore import restore


def _exit_table(result: dict) -> list[str]:
    lines = [f"{'exit':>4} {'MMACs':>8} {'median ms':>10} {'p95 ms':>8} {'img/s':>9}"]
    lines += [f"{e['exit']:>4} {e['mmacs']:>8.3f} {e['median_ms']:>10.3f} {e['p95_ms']:>8.3f} "
              f"{e['images_per_s']:>9.1f}" for e in result["exits"]]
    return lines


def _budget_table(result: dict) -> list[str]:
    lines = [f"{'budget':>7} {'MMACs':>7} {'acc %':>6} {'median ms':>10} {'p95 ms':>8} "
             f"{'mean ms':>8} {'speed-up mean/median':>20} {'MACs ratio':>10} {'agree':>6} "
             f"{'saved':>6}  exit shares"]
    for b in result["budgets"]:
        shares = " ".join(f"{s:.2f}" for s in b["exit_shares"])
        near = (f" ({b['saved_differences']} differ, {b['saved_differences_near_threshold']} "
                "near a threshold)" if b["saved_differences"] else "")
        lines.append(f"{b['budget_mmacs']:>7.3f} {b['mmacs']:>7.3f} {b['accuracy']:>6.2f} "
                     f"{b['median_ms']:>10.3f} {b['p95_ms']:>8.3f} {b['mean_ms']:>8.3f} "
                     f"{b['speedup']:>12.2f}x / {b['speedup_median']:.2f}x "
                     f"{b['mmacs_ratio']:>9.2f}x "
                     f"{b['agreement']:>6.3f} {b['agreement_saved']:>6.3f}  {shares}{near}")
    return lines


def render(result: dict) -> str:
    head = (f"{result['run_id']}: {result['device']} ({result['timing']}), batch size "
            f"{result['batch_size']}, {result['threads']} thread(s), {result['images']} test "
            f"images x {result['repeats']} repeats, load {result['load_before'][0]:.2f} -> "
            f"{result['load_after'][0]:.2f}")
    return "\n".join([head, "", "every image to exit k:", *_exit_table(result), "",
                      "fixed budgets (thresholds from the held-out split):",
                      *_budget_table(result)])


def main(args) -> int:
    settings = Settings(device=args.device, batch_size=args.batch_size, threads=args.threads,
                        warmup=args.warmup, repeats=args.repeats, images=args.images)
    restored = restore(Path(args.run_dir))
    result, _ = measure(restored, settings, data_root=args.data_root)
    store.Run(Path(args.run_dir)).write_latency(result)
    print(render(result))
    print(f"\nwrote {Path(args.run_dir) / 'latency.json'}")
    return 0
