"""Command line: ``python -m bench {run,results,report,tune,latency,export,evaluate,speed} ...``.

Exit codes: 0 success, 2 bad suite / bad arguments / missing data / a results or reports
folder that cannot be used (message names the file and the key, no traceback, nothing
written), 1 when a run failed, 130 when interrupted (Ctrl-C, also while starting up), 141
when the reader of the output went away (``bench results ... | head``: nothing is said).
Warnings (an unreadable results file left out, a checkpoint set aside) are printed one line
each.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import methods
from bench import backbones, export
from bench.commands import COMMANDS
from bench.engine import precision
from bench.data import DatasetNotFound, MissingDependency
from bench.commands.common import os_error
from bench.errors import UsageError
from bench.pipeline.distributed import RanksDisagree

RESULTS = Path("results")
REPORTS = Path("reports")


def _add_suite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", help="suite YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite field, e.g. training.epochs=3 (repeatable)")
    p.add_argument("--only", metavar="PATTERN",
                   help="run only runs whose id or backbone/method/seed matches (fnmatch)")
    p.add_argument("--results", type=Path, default=RESULTS, help="results folder (results/)")
    p.add_argument("--executor", choices=("local", "ray", "slurm"),
                   help="who runs the work: this process (local, the default), Ray tasks "
                        "or SLURM jobs (the suite's executor.name; docs/scaling.md)")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="join this Ray cluster (implies --executor ray); without it a local "
                        "one starts and stops with the command")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate every run of a suite")
    _add_suite_args(run)
    run.add_argument("--dry-run", action="store_true",
                     help="list the runs with per-exit MMACs; train nothing")
    run.add_argument("--estimate", action="store_true",
                     help="with --dry-run: time a few training steps of each distinct "
                          "setting here and print the hours per run and for the suite")
    run.add_argument("--runs-per-device", metavar="K", default=None,
                     help="K runs side by side on each device, each its own process (local); "
                          "Ray: 1/K GPU per run; SLURM: K runs per GPU job (default 1)")
    run.add_argument("--reports", type=Path, default=REPORTS, help="reports folder (reports/)")
    run.add_argument("--no-report", action="store_true", help="do not render HTML at the end")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--rerun-stale", action="store_true",
                     help="train again, from scratch, finished runs made by other code "
                          "(their outputs are moved to previous/ in the run folder)")

    res = sub.add_parser("results", help="print a suite's comparison table")
    res.add_argument("suite", help="suite YAML file (anywhere) or its results folder name")
    res.add_argument("--results", type=Path, default=RESULTS)
    res.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="show the runs of the suite file with these "
                     "overrides instead of the last bench run's (other settings, on purpose)")

    rep = sub.add_parser("report", help="render reports/ from the results store")
    rep.add_argument("suites", nargs="*", help="suite YAML files or results folder names "
                     "(default: every suite under results/)")
    rep.add_argument("--results", type=Path, default=RESULTS)
    rep.add_argument("--reports", type=Path, default=REPORTS)

    tune = sub.add_parser("tune", help="tune methods' options with Optuna on the held-out "
                                       "split (docs/tuning.md)")
    _add_suite_args(tune)
    tune.add_argument("--storage", help="SQLAlchemy URL of the study database "
                      "(default: SQLite in the results folder)")
    tune.add_argument("--quiet", action="store_true", help="no training bar per trial")

    lat = sub.add_parser("latency", help="time a finished run with real early exits "
                                         "(writes RUN_DIR/latency.json)")
    lat.add_argument("run_dir", type=Path, help="a finished run folder (anywhere)")
    lat.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    sizes = lat.add_mutually_exclusive_group()
    sizes.add_argument("--batch-size", type=int, default=1,
                       help="1: image by image (default); more: exited images leave the batch")
    sizes.add_argument("--batch-sizes", metavar="B1,B2,...",
                       help="measure each of these batch sizes, e.g. 1,8,64,256")
    lat.add_argument("--runtime", default="pytorch", metavar="RUNTIME",
                     help="pytorch (default), onnxruntime (the run's stage graphs in ONNX "
                          "Runtime, CPU) or pytorch,onnxruntime: both, timed one after the "
                          "other")
    lat.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    lat.add_argument("--warmup", type=int, default=10,
                     help="untimed batches before each timed configuration (default 10)")
    lat.add_argument("--repeats", type=int, default=3,
                     help="timed passes over the images (default 3)")
    lat.add_argument("--images", type=int, help="time the first N test images (default all)")
    lat.add_argument("--data-root", type=Path,
                     help="where the data set lives, if not where config.json says")

    exp = sub.add_parser("export", help="write a finished run as one deployable file, or "
                                        "as ONNX stage graphs (docs/deploy.md)")
    exp.add_argument("run_dir", type=Path, help="a finished run folder (anywhere)")
    exp.add_argument("--out", type=Path, required=True,
                     help="the file to write (model.pt), or the folder (--format onnx)")
    exp.add_argument("--format", choices=export.FORMATS, default="pt",
                     help="pt: one PyTorch file (default); onnx: one ONNX graph per exit and "
                          "manifest.json (needs the deploy extra)")
    exp.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                     help="torch's ONNX exporter (default torchscript: dynamo=False)")
    exp.add_argument("--data-root", type=Path,
                     help="where the data set lives (for its normalization), if not where "
                          "config.json says")

    ev = sub.add_parser("evaluate", help="evaluate a run of a suite from a checkpoint or from "
                                         "per-exit logits instead of training")
    _add_suite_args(ev)
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="weights of the run's backbone (reference formats: "
                             "docs/checkpoints.md)")
    source.add_argument("--logits", type=Path, metavar="FILE",
                        help=".pt or .npz with held-out and test logits per exit, targets "
                             "and exit_mmacs (docs/results-format.md)")
    ev.add_argument("--reports", type=Path, default=REPORTS, help="reports folder (reports/)")
    ev.add_argument("--no-report", action="store_true", help="do not render HTML at the end")

    _add_speed_args(sub.add_parser("speed", help="time a method's training steps on random "
                                                 "data, every stage (median, threads, load)",
                                   description="Time a method's training steps on random "
                                               "data (bench.pipeline.speed)."))
    return parser


def _add_speed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="msdnet10_cifar", choices=backbones.names())
    p.add_argument("--method", default="boostnet", choices=methods.names())
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option (repeatable)")
    p.add_argument("--stage", type=int, default=None,
                   help="time only this 1-based stage of the method (default: every stage)")
    p.add_argument("--against", default=None, choices=methods.names(), metavar="METHOD",
                   help="also time this method's steps (its first stage, defaults), "
                        "alternating with ours, and print the ratios")
    p.add_argument("--reference", type=Path, metavar="DIR",
                   help="also time the BoostNet reference implementation from this checkout "
                        "of SHI-Labs/Boosted-Dynamic-Networks, alternating with ours")
    p.add_argument("--plain", action="store_true",
                   help="also time our model with every tensor NCHW (no CPU channels_last "
                        "layout), alternating with ours")
    p.add_argument("--dataset", default="cifar100", metavar="NAME",
                   help="the data set whose classes the heads predict (default cifar100)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="the heads' classes, instead of the data set's")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", "--steps", dest="rounds", type=int, default=10,
                   help="timed rounds (steps, or with --epoch runs of --epoch-steps steps) "
                        "of each timed implementation (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    p.add_argument("--epoch", action="store_true",
                   help="time runs of --epoch-steps steps on batches augmented on the device "
                        "and print images/s and one 50,000-image epoch's wall-clock")
    p.add_argument("--epoch-steps", type=int, default=50,
                   help="steps per round with --epoch (default 50)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--precision", default="fp32", choices=precision.PRECISIONS,
                   help="training.precision: auto is bf16 on GPUs that support it, else fp32 "
                        "(default fp32)")
    p.add_argument("--channels-last", action="store_true",
                   help="put the model and the input in channels_last memory format "
                        "(training.channels_last)")
    p.add_argument("--compile", action="store_true",
                   help="time the model under torch.compile as the trainer compiles it (CUDA "
                        "graphs on a GPU; the compiling steps are part of --warmup and take "
                        "minutes on a CPU)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="time the step recorded as one CUDA graph and replayed, as the "
                        "trainer does with training.cuda_graphs (CUDA only; the recording "
                        "is part of --warmup)")
    p.add_argument("--profile", action="store_true",
                   help="after timing, profile one more round of ours (torch.profiler) and "
                        "print where the time goes: the ops with the most device time (CPU "
                        "time on a CPU), and the round's wall-clock against the device's "
                        "busy time; with --plain, --against or --reference also a table of "
                        "self time per op of every timed implementation side by side")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    warnings = OneLineWarnings()
    logger = logging.getLogger("bench")
    logger.addHandler(warnings)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe is found here, not at exit
        return code
    except (UsageError, DatasetNotFound, MissingDependency) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bench results ... | head`: the reader has all it wanted
        quiet_stdout()
        return 141
    except OSError as err:  # e.g. a results or reports folder that cannot be written
        print(f"error: {os_error(err)}", file=sys.stderr)
        return 2
    except RanksDisagree as err:
        print(f"error: {err}", file=sys.stderr)
        # Exit at once: the process group still holds the collective the other ranks never
        # joined, and on torch 2.12 and 2.13 its teardown at interpreter exit waits for it
        # forever, so torchrun never saw this rank end (the job hung).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(warnings)


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class OneLineWarnings(logging.Handler):
    """The harness's warnings (bench.* loggers), one line each on stderr, each said once."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.said: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        if message not in self.said:
            self.said.add(message)
            print(f"warning: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
