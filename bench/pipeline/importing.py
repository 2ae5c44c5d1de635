"""Runs whose predictions come from elsewhere, evaluated and stored like trained ones
(``bench evaluate``):

- a checkpoint (``--checkpoint``): weights saved by the reference implementations or by
  this harness, loaded into the run's backbone (bench.checkpoints), then predicted on the
  held-out and test splits exactly as the runner does after training;
- per-exit logits (``--logits``): a ``.pt`` or ``.npz`` file from any tool with held-out
  and test logits, targets and per-exit costs (docs/results-format.md, "Imported logits").

Either becomes a run folder ``<run id>--imported-<sha8 of the file>`` beside the suite's
runs, its method label suffixed with `` [imported]`` (so the report shows it as its own
entry) and config.json's ``imported`` saying from where. Metrics are computed by the same
code as a trained run's (thresholds fitted on the held-out split only), before anything is
written: a file the metrics cannot be computed from leaves no run folder, and a write that
fails half-way marks the run failed. The newest import of a run is the one the tables show
(bench.store.Suite.runs).

A logits file must hold finite logits, at least one image per split and finite, positive,
non-decreasing exit costs. Logits are stored in float16 like a trained run's where every
value fits float16 (|x| <= 65504), else in float32 (float16 would turn them into infinities).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench import checkpoints, fileio, flops, store
from bench.config import RunSpec, SuiteConfig
from bench.errors import UsageError
from bench.evaluate import compute_metrics
from bench.pipeline import distributed
from bench.pipeline.distributed import Dist
from bench.pipeline.metrics import rule_options
from bench.pipeline.setup import DataCache, environment, pick_device, seed_everything
from bench.store import now

LOGIT_KEYS = ("heldout_logits", "heldout_targets", "test_logits", "test_targets", "exit_mmacs")
IMPORTED = " [imported]"


def imported_run(folder: store.Suite, spec: RunSpec, kind: str, path: Path, extra: dict
                 ) -> tuple[store.Run, dict]:
    """The run folder of ``spec`` imported from ``path`` and its config.json content."""
    sha = fileio.sha256_file(path)
    run_id = f"{spec.run_id}--imported-{sha[:8]}"
    config = spec.config
    config["method"] = {**config["method"], "label": config["method"]["label"] + IMPORTED}
    config.update(suite=spec.suite_slug, run_id=run_id,
                  imported={"kind": kind, "file": str(Path(path).resolve()), "sha256": sha,
                            "date": now(), "replaces_run": spec.run_id, **extra})
    return folder.run(run_id), config


def _store(run: store.Run, config: dict, files: list, preds: dict, exit_mmacs: list[float],
           budgets: list[float], spec: RunSpec, code: dict) -> None:
    """Metrics from ``preds`` (as they are saved), then the run folder: config.json, the
    ``files`` (calls writing more of it), predictions, metrics and status done. A write that
    fails marks the run failed (where it still can) and goes on to the command line."""
    metrics = compute_metrics(preds, exit_mmacs, budgets, **rule_options(spec.evaluation))
    run.folder.mkdir(parents=True, exist_ok=True)
    try:
        run.write_config(config)
        for write in files:
            write()
        run.save_predictions(preds)
        run.write_metrics(metrics)
        run.set_status("done", epoch=0, epochs=0, fingerprint=code["sha256"])
    except Exception as err:
        try:
            run.set_status("failed", epoch=0, epochs=0, fingerprint=code["sha256"],
                           error=f"{type(err).__name__}: {err}")
        except Exception:  # e.g. the disk is full: the error below says so
            pass
        raise


# -- checkpoints ------------------------------------------------------------------------
def load_weights(spec: RunSpec, path: Path, method):
    """The run's backbone with the checkpoint's weights and the method installed."""
    try:
        model = checkpoints.load(path, spec.backbone_name, num_classes=spec.num_classes,
                                 **spec.overrides)
    except (checkpoints.CheckpointError, OSError) as err:
        raise UsageError(str(err)) from None
    method.install(model)
    if getattr(method, "exit_heads", None) is not None:
        raise UsageError(f"method {spec.method_name!r} adds modules at the exits, which a "
                         f"backbone checkpoint ({path}) does not hold: evaluate it with a "
                         "method without exit modules (joint, boostnet, ...)")
    method.configure(model, None)
    return model


def import_checkpoint(spec: RunSpec, folder: store.Suite, path: Path, data: DataCache,
                      method, code: dict) -> store.Run:
    """Evaluate the checkpoint at ``path`` as run ``spec`` (no training); its run folder."""
    training = spec.training
    device = pick_device(training.device)
    seed_everything(spec.seed)
    splits = data.get(spec.dataset, spec.seed)
    model = load_weights(spec, path, method).to(device)
    run, config = imported_run(folder, spec, "checkpoint", path, {})
    preds = distributed.predict_splits(model, method, splits, training.eval_batch_size,
                                       device, Dist())
    params = flops.params_per_exit(model)
    files = [lambda: run.write_environment(environment(device, code)),
             lambda: run.write_heldout_index(splits.heldout_indices),
             lambda: run.write_costs(list(spec.exit_mmacs), params, list(spec.input_size))]
    _store(run, config, files, preds, list(spec.exit_mmacs), list(spec.budgets_mmacs), spec,
           code)
    return run


# -- logits -----------------------------------------------------------------------------
def read_logits(path: Path) -> dict:
    """The five arrays of a logits file (``.pt``: a dict of tensors, loaded with
    ``weights_only=True``; ``.npz``: numpy arrays), checked; a UsageError names the file,
    the key and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--logits {path}: no such file")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                raw = {k: torch.from_numpy(f[k]) for k in f.files}
        elif path.suffix == ".pt":
            raw = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise UsageError(f"--logits {path}: expected a .pt or .npz file")
    except UsageError:
        raise
    except Exception as err:
        raise UsageError(f"--logits {path}: cannot be read ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"--logits {path}: expected a dict of arrays with keys "
                         f"{', '.join(LOGIT_KEYS)}, found {type(raw).__name__}")
    missing = [k for k in LOGIT_KEYS if k not in raw]
    if missing:
        raise UsageError(f"--logits {path}: missing key(s) {', '.join(missing)} (expected "
                         f"{', '.join(LOGIT_KEYS)})")
    return check_logits({k: torch.as_tensor(raw[k]) for k in LOGIT_KEYS}, path)


def check_logits(f: dict, path: Path) -> dict:
    exits = f["exit_mmacs"].double().flatten()
    n = len(exits)
    for split in ("heldout", "test"):
        check_split(f[f"{split}_logits"], f[f"{split}_targets"], split, n, path)
    if f["heldout_logits"].shape[2] != f["test_logits"].shape[2]:
        raise UsageError(f"--logits {path}: heldout_logits and test_logits have different "
                         "numbers of classes")
    if (n < 1 or not bool(torch.isfinite(exits).all()) or not bool((exits > 0).all())
            or bool((exits[1:] < exits[:-1]).any())):
        raise UsageError(f"--logits {path}: exit_mmacs must be finite, positive cumulative "
                         f"costs, non-decreasing, one per exit; found {exits.tolist()}")
    return {**f, "exit_mmacs": exits}


def check_split(logits: torch.Tensor, targets: torch.Tensor, split: str, n: int,
                path: Path) -> None:
    """One split's logits [n exits, images, classes], finite, and its targets."""
    if logits.dim() != 3 or logits.shape[0] != n or not logits.is_floating_point():
        raise UsageError(f"--logits {path}: {split}_logits must be floating point "
                         f"[exits={n}, images, classes], found shape {tuple(logits.shape)} "
                         f"{logits.dtype}")
    if logits.shape[1] == 0:
        why = "thresholds are fitted on" if split == "heldout" else "accuracy is measured on"
        raise UsageError(f"--logits {path}: {split}_logits holds no image; {why} the "
                         f"{split} split")
    bad = ~torch.isfinite(logits)
    if bool(bad.any()):
        exit_, image, cls = (int(i) for i in bad.nonzero()[0])
        raise UsageError(f"--logits {path}: {split}_logits must be finite; "
                         f"{int(bad.sum())} of {logits.numel()} values are not (the first: "
                         f"{float(logits[exit_, image, cls])} at exit {exit_ + 1}, image "
                         f"{image}, class {cls})")
    if targets.shape != logits.shape[1:2] or targets.is_floating_point():
        raise UsageError(f"--logits {path}: {split}_targets must be integers [images="
                         f"{logits.shape[1]}], found shape {tuple(targets.shape)} "
                         f"{targets.dtype}")
    if targets.min() < 0 or targets.max() >= logits.shape[2]:
        raise UsageError(f"--logits {path}: {split}_targets must lie in 0.."
                         f"{logits.shape[2] - 1}")


def stored_logits(logits: torch.Tensor, key: str, path: Path) -> torch.Tensor:
    """float16 (what a trained run saves) where every value fits it, else float32; logits
    beyond float32's range are refused, naming the largest."""
    for dtype in (torch.float16, torch.float32):
        if float(logits.abs().max()) <= torch.finfo(dtype).max:
            return logits.to(dtype)
    raise UsageError(f"--logits {path}: {key} holds {float(logits.abs().max()):.4g}, beyond "
                     f"float32's range ({torch.finfo(torch.float32).max:.4g})")


def logit_budgets(config: SuiteConfig, exit_mmacs: list[float], path: Path) -> list[float]:
    """The suite's budgets for the file's costs: fractions of its last exit's cost, or the
    absolute MMACs, which must lie within its exits' costs."""
    b = config.budgets
    if b.fractions is not None:
        return [f * exit_mmacs[-1] for f in b.fractions]
    budgets = list(b.mmacs or [])
    outside = [m for m in budgets if not exit_mmacs[0] <= m <= exit_mmacs[-1]]
    if outside:
        raise UsageError(f"--logits {path}: the suite's budgets {outside} (MMACs) lie outside "
                         f"the file's exit costs {exit_mmacs[0]:.4g}..{exit_mmacs[-1]:.4g}; "
                         "give budgets as fractions in the suite")
    return budgets


def import_logits(spec: RunSpec, suite: SuiteConfig, folder: store.Suite, path: Path,
                  code: dict) -> store.Run:
    """Evaluate the logits file at ``path`` as run ``spec``; its run folder."""
    f = read_logits(path)
    exit_mmacs = f["exit_mmacs"].tolist()
    budgets = logit_budgets(suite, exit_mmacs, path)
    shape = tuple(f["test_logits"].shape)
    run, config = imported_run(folder, spec, "logits", path,
                               {"exits": shape[0], "classes": shape[2]})
    config["budgets_mmacs"] = budgets
    preds = {split: {"logits": stored_logits(f[f"{split}_logits"], f"{split}_logits", path),
                     "targets": f[f"{split}_targets"].long()} for split in ("heldout", "test")}
    files = [lambda: run.write_environment({"date": now(), "code": code,
                                            "imported": str(path)}),
             lambda: run.write_costs(exit_mmacs, [], list(spec.input_size))]
    _store(run, config, files, preds, exit_mmacs, budgets, spec, code)
    return run
