"""The one table of defaults of the suite schema (docs: README "Suites", the shipped suites).

A key set to null in a suite takes its default too. ``REQUIRED`` keys have none.
"""
from __future__ import annotations

REQUIRED = object()

# Part of every run id, frozen: results keep their ids across code changes, which the code
# fingerprint (bench.fingerprint) tracks instead.
CODE_VERSION = "0.1.0"

# The option value meaning "take this option from the suite's Optuna study" (bench tune).
TUNED = "tuned"

TOP_LEVEL = {
    "name": REQUIRED,  # display name, any text; results/<slug>/
    "description": "",
    "dataset": REQUIRED,
    "backbones": REQUIRED,
    "methods": REQUIRED,
    "seeds": [0],
    "training": {},
    "budgets": {},
    "evaluation": {},
    "tune": None,  # no tuning section
    "baseline": None,  # BASELINE where the suite has a method labelled so, else none
    "plugins": [],
    "executor": {},  # EXECUTOR: how bench run / bench tune hand out the work
}
BASELINE = "joint"  # the suite's reference method label when it has one

DATASET = {"name": REQUIRED, "root": "data", "download": False, "heldout": None,
           "subset": {}, "options": {}}
SUBSET = {"train": None, "test": None}  # first k images of a split (smoke runs); None: all
# The held-out calibration images a suite takes from train when dataset.heldout is unset,
# and each data set's classes and image shape, are the data set's own (bench.data.register:
# 5,000 for CIFAR as in the paper, 50,000 for ImageNet, a fifth of synthetic's train_size).

# The paper's recipe: SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 64; lr x0.1 at
# 50% and 75% of the epochs (CIFAR: epochs 150 and 225 of 300).
TRAINING = {"epochs": 300, "batch_size": 64, "eval_batch_size": 256, "optimizer": {},
            "schedule": {}, "device": "auto", "precision": "fp32", "workers": 0,
            "channels_last": False, "sync_bn": False, "compile": False,
            # True: the last partial training batch is dropped (unless the split holds less
            # than one batch); false keeps it, as the BoostNet reference's DataLoader does.
            "drop_last": True}
# training.precision (bench.engine.precision): fp32 by default, as runs trained before the key
# existed; ``auto`` (bf16 on GPUs that support it) is the fast choice on a GPU.
# training.amp, the key it replaced, is still read as an alias: amp true is fp16, false fp32.
# Run ids hash the precisions amp could express as amp did (AMP_PRECISION inverted), so
# every run made before keeps its id: fp32 as amp false, fp16 as amp true (fp16 on CUDA).
AMP_PRECISION = {False: "fp32", True: "fp16"}
OPTIMIZERS = {"sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False}}
OPTIMIZER = "sgd"
SCHEDULES = {"step": {"milestones": [0.5, 0.75], "gamma": 0.1}, "cosine": {}, "constant": {}}
SCHEDULE = "step"

BUDGETS = {"mmacs": None, "fractions": None}  # at most one; none: no budgeted evaluation
# Evaluation options are computed from saved logits, so they never change a run id.
# Exit rules (bench.evaluate): every (combiner, criterion) pair is evaluated; the default pair
# (none, max_softmax) is what metrics.json's top-level keys have always held. A combiner is
# a name or {name, **options}; global_threshold adds the one-threshold fit as a variant.
EVALUATION = {"calibration": False, "criteria": ["max_softmax"], "combiners": ["none"],
              "global_threshold": False}

BACKBONE_ENTRY = {"name": REQUIRED, "label": None, "overrides": {}}  # label: the name
METHOD_ENTRY = {"name": REQUIRED, "label": None, "options": {}}

# Optuna search (bench tune; docs/tuning.md).
TUNE = {
    "runs": None,  # fnmatch over "backbone/method" labels (None: the tuned methods, else
                   # every method with a search space)
    "seed": None,  # the suite seed whose data order and init the trials use (None: first)
    "space": {},  # SPACE; unset keys: the tuned options' own ranges (methods.search_space)
    "trials": 20,  # total over all workers and reruns
    "timeout": None,  # seconds, per worker and invocation
    "epochs": None,  # shorten each trial's training (None: training.epochs)
    "objective": "budgeted",
    "sampler": {},  # SAMPLER
    "pruner": {},  # PRUNERS[name]
}
SPACE_KEYS = ("per_exit", "low", "high", "log")
SAMPLERS = ("tpe", "random")
SAMPLER = {"name": "tpe", "seed": 0}
PRUNER = "median"
PRUNERS = {
    "median": {"n_startup_trials": 1, "n_warmup_steps": 0},
    "percentile": {"percentile": 25.0, "n_startup_trials": 1, "n_warmup_steps": 0},
    "threshold": {"lower": None, "upper": None, "n_warmup_steps": 0},
    "none": {},
}
OBJECTIVES = ("budgeted", "anytime")

# Run-config keys that cannot change a trained model; left out of the run id's hash, so
# moving the data, changing the loader processes or evaluating differently from the saved
# logits does not orphan finished runs.
NOT_HASHED = (("suite",), ("run_id",), ("dataset", "root"), ("dataset", "download"),
              ("dataset", "options", "workers"), ("training", "workers"), ("evaluation",),
              ("tuned",))
# Keys added to the schema after run ids were first pinned, with the value that reproduces
# what runs did before the key existed: at that value they are left out of the hash, so a
# finished run keeps its id when the schema grows; any other value is hashed as usual.
HASHED_UNLESS = {
    ("dataset", "options", "min_scale"): 1.0,  # synthetic: objects drawn at full size
    ("dataset", "options", "clutter"): 0.0,  # synthetic: plain background
    ("dataset", "options", "min_difficulty"): 0.0,  # synthetic: difficulties from 0
    ("dataset", "options", "normalization"): "standard",  # CIFAR: the usual constants
    ("training", "drop_last"): True,  # the last partial training batch dropped
}
# Tune keys that do not change what a trial's value means: left out of the study hash, so
# a study can be extended (more trials, another sampler or pruner) and still resume.
NOT_IN_STUDY_HASH = ("runs", "trials", "timeout", "sampler", "pruner")

# Executors (bench.executors, docs/scaling.md): how the runs (and tuning workers) are
# handed out. Never part of a run id or of suite.json: where a run trains does not change
# what it is. ``name`` is what --executor sets; each executor's options sit under its name.
EXECUTORS = ("local", "ray", "slurm")
EXECUTOR = {"name": "local", "ray": {}, "slurm": {}}
RAY = {
    "address": None,  # join this cluster (--ray-address); None: start one for the command
    "num_cpus": 1,  # per run (and per tuning worker)
    "num_gpus": None,  # per run; None: 1 where the cluster has GPUs and training may use
                       # them (training.device not cpu), else 0
    "results": "shared",  # shared: every node writes the results root itself; driver:
                          # files come back to the driver, which writes them
    "max_retries": 3,  # a run whose worker process dies is started again this many times
    "tune_workers": 2,  # bench tune: tuning workers (actors) sharing each study
}
RAY_RESULTS = ("shared", "driver")
SLURM = {
    "cluster": "slurm",  # slurm | local (submitit's local executor: this machine, no SLURM)
    "partition": None,  # --partition; None: the cluster's default
    "gpus": None,  # per run; None: 1 when training.device asks for CUDA (or auto and
                   # this machine sees a GPU), else 0
    "cpus": 1,  # --cpus-per-task
    "mem_gb": None,  # --mem; None: the cluster's default
    "time_min": 1440,  # --time, minutes per job (requeued jobs start their clock again)
    "array_parallelism": None,  # at most this many runs at once; None: no limit
    "max_requeue": 3,  # requeues after a time-out (preemptions do not count)
    "tune_workers": 2,  # bench tune: jobs sharing each study
    "wait": True,  # false: submit, print the job ids and return
}
SLURM_CLUSTERS = ("slurm", "local")
