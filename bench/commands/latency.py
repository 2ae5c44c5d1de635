"""``bench latency RUN_DIR``: time a finished run with real early exits, at one or several
batch sizes, in PyTorch and/or ONNX Runtime; writes RUN_DIR/latency.json (keeping the
measurements of other batch sizes, runtimes, devices and threads) and prints per-exit and
per-budget tables."""
from __future__ import annotations

import sys
from pathlib import Path

from bench import store
from bench.errors import UsageError
from bench.pipeline.latency import RUNTIMES, Settings, measure_all, merge
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
    head = (f"{result['run_id']}: {result.get('runtime', 'pytorch')} on {result['device']} "
            f"({result['timing']}), batch size "
            f"{result['batch_size']}, {result['threads']} thread(s), {result['images']} test "
            f"images x {result['repeats']} repeats, load {result['load_before'][0]:.2f} -> "
            f"{result['load_after'][0]:.2f}")
    extra = []
    if "max_abs_logit_difference" in result:
        extra.append(f"largest |F_n(onnxruntime) - F_n(pytorch)|: "
                     f"{result['max_abs_logit_difference']:.2e}")
    energy = result.get("energy") or {}
    if not energy.get("available", True):
        extra.append(f"energy: none ({energy.get('reason')})")
    return "\n".join([head, "", "every image to exit k:", *_exit_table(result), "",
                      "fixed budgets (thresholds from the held-out split):",
                      *_budget_table(result), *extra])


def speedup_table(results: list[dict]) -> list[str]:
    """Speed-up over the full network (mean ms) per budget, one column per runtime and
    batch size."""
    columns = [f"{r.get('runtime', 'pytorch')} b{r['batch_size']}" for r in results]
    lines = ["speed-up over every image to the last exit (mean ms), per batch size:",
             f"{'budget':>8} {'MACs':>6} " + " ".join(f"{c:>16}" for c in columns)]
    for i, b in enumerate(results[0]["budgets"]):
        cells = [f"{r['budgets'][i]['speedup']:>15.2f}x" for r in results]
        lines.append(f"{b['budget_mmacs']:>8.3f} {b['mmacs_ratio']:>5.2f}x " + " ".join(cells))
    return lines


def batch_sizes(args) -> list[int]:
    if args.batch_sizes is None:
        return [args.batch_size]
    try:
        sizes = [int(v) for v in args.batch_sizes.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--batch-sizes must be positive integers separated by commas, "
                         f"e.g. 1,8,64; got {args.batch_sizes!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"--batch-sizes must be positive integers separated by commas, "
                         f"e.g. 1,8,64; got {args.batch_sizes!r}")
    return list(dict.fromkeys(sizes))


def runtimes(text: str) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in RUNTIMES]
    if unknown or not chosen:
        raise UsageError(f"--runtime must be {' or '.join(RUNTIMES)} (or both, separated by "
                         f"a comma), got {text!r}")
    return list(dict.fromkeys(chosen))


def main(args) -> int:
    settings = Settings(device=args.device, batch_size=args.batch_size, threads=args.threads,
                        warmup=args.warmup, repeats=args.repeats, images=args.images)
    sizes, chosen = batch_sizes(args), runtimes(args.runtime)
    restored = restore(Path(args.run_dir))
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if len(sizes) * len(chosen) > 1 \
        else (lambda _: None)
    results = measure_all(restored, settings, sizes, chosen, args.data_root, say)
    run = store.Run(Path(args.run_dir))
    run.write_latency(merge(run.latency, results))
    print("\n\n".join(render(r) for r in results))
    if len(results) > 1 and results[0]["budgets"]:
        print("\n" + "\n".join(speedup_table(results)))
    print(f"\nwrote {Path(args.run_dir) / 'latency.json'}")
    return 0
