"""A whole training step recorded once as a CUDA graph and replayed (``training.cuda_graphs``).

A small CIFAR network's step is launch-bound on a GPU: hundreds of small kernels, each
launched from Python. Recorded as one CUDA graph (forward, loss, backward and SGD step; no
compiler involved), a step is one launch. The recipe is PyTorch's "whole network capture":

- a graph is recorded for one batch shape, into static input tensors that each batch is
  copied into; a batch of another shape (the last partial batch when
  ``training.drop_last`` is false) runs eagerly, with the same weights and optimizer state;
- the first ``WARMUP_STEPS`` steps run eagerly on a side stream (lazy initialisation, the
  optimizer's momentum buffers) before anything is recorded; they are real training steps
  on real batches, so no step is taken twice or skipped: the batch a graph is recorded on
  is replayed once the recording ends, and nothing runs while it is recorded;
- SGD's learning rate is a Python float that the recorded update holds as a constant (this
  torch's SGD reads a tensor lr back to the host, which a graph cannot record), so a step
  is recorded again whenever the optimizer's hyperparameters change (the schedule's
  epochs), from the first step with the new values;
- nothing inside the recording may wait for the GPU: the finiteness check of the loss runs
  after each replay, on the recorded loss (so a step with a non-finite loss has already
  updated the weights when the run stops; the run fails either way). What cannot be
  recorded is declared and falls back to eager steps: see :func:`decide`.

The recording machinery is a :class:`Recorder`; :class:`CudaRecorder` is torch.cuda's, and
tests on a CPU pass one that re-runs the step instead, to check the bookkeeping.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import torch

WARMUP_STEPS = 3  # eager steps on a side stream before the first recording (PyTorch's: 3)
SETTINGS = ("auto", True, False)  # training.cuda_graphs

Step = Callable[[torch.Tensor, torch.Tensor], Any]


class CudaGraphsRefused(ValueError):
    """training.cuda_graphs is true where a step cannot be recorded."""


def decide(setting: bool | str, device: torch.device | str, blockers: Sequence[str] = (),
           who: str = "the run") -> tuple[bool, str | None]:
    """Whether steps are recorded as CUDA graphs, and for ``auto`` falling back on a CUDA
    device the line that says why (None where there is nothing to say: ``false``, or
    ``auto`` off CUDA). ``blockers``: why this step cannot be recorded (the method's
    declaration, fp16's gradient scaler, compile, several processes); ``who`` names what
    is refused. ``true`` off CUDA or with a blocker raises :class:`CudaGraphsRefused`."""
    if setting not in SETTINGS:
        raise ValueError(f"training.cuda_graphs: expected true, false or auto, found "
                         f"{setting!r}")
    if setting is False:
        return False, None
    device = torch.device(device)
    if device.type != "cuda":
        if setting is True:
            raise CudaGraphsRefused(f"training.cuda_graphs is true, but {who} trains on "
                                    f"{device}: CUDA graphs need a CUDA device (use auto or "
                                    "false)")
        return False, None
    if blockers:
        if setting is True:
            raise CudaGraphsRefused(f"training.cuda_graphs is true, but {who} cannot be "
                                    f"recorded as a CUDA graph: {'; '.join(blockers)}")
        return False, f"{who}: eager steps, not CUDA graphs ({'; '.join(blockers)})"
    return True, None


def setting_blockers(precision: str, compile: bool, world_size: int) -> list[str]:
    """What in the training settings keeps a step from being recorded (the method's own
    reasons come from the method)."""
    out = []
    if precision == "fp16":
        out.append("fp16's gradient scaler reads the overflow flag back to the host every "
                   "step (use bf16)")
    if compile:
        out.append("training.compile records CUDA graphs of the forward itself")
    if world_size > 1:
        out.append("several processes (DDP's all-reduce is not recorded here)")
    return out


class CudaRecorder:
    """torch.cuda.graph: records a function's kernels; ``replay`` runs them again."""

    def __init__(self):
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: Any = None

    def capture(self, fn: Callable[[], Any]) -> None:
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: a data loader's pin-memory thread may allocate meanwhile
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = fn()

    def replay(self) -> None:
        self.graph.replay()

    def reset(self) -> None:
        """Drop the graph and its memory pool (before the next recording)."""
        self.outputs = None
        if self.graph is not None:
            self.graph.reset()
        self.graph = None


@contextlib.contextmanager
def on_side_stream(stream: torch.cuda.Stream | None):
    """Work run on ``stream``, which first waits for the current stream, and that the current
    stream waits for afterwards (PyTorch's warm-up recipe); None: on the current stream."""
    if stream is None:
        yield
        return
    current = torch.cuda.current_stream(stream.device)
    stream.wait_stream(current)
    with torch.cuda.stream(stream):
        yield
    current.wait_stream(stream)


class GraphedStep:
    """``step(x, y)`` taken as a replayed CUDA graph where it can be.

    ``eager(x, y)``: one real training step, returning the per-sample losses;
    ``record(x, y)``: the same step as it is recorded (no host synchronisation: its
    finiteness check only keeps the loss, which ``after_replay()`` checks once a replay
    ran); ``hyperparameters()``: what the recording holds as constants (the optimizer's
    learning rates and the like), compared before every step; ``prepare()``: called before
    each recording (the optimizer's gradients set to None, so that the recording allocates
    them from its own pool)."""

    def __init__(self, eager: Step, record: Step, *, hyperparameters: Callable[[], Any],
                 after_replay: Callable[[], None], prepare: Callable[[], None],
                 device: torch.device | str, recorder=None, warmup: int = WARMUP_STEPS):
        self.eager, self.record = eager, record
        self.hyperparameters, self.after_replay, self.prepare = (hyperparameters,
                                                                 after_replay, prepare)
        self.device = torch.device(device)
        self.recorder = recorder if recorder is not None else CudaRecorder()
        self.warmup_left = warmup
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.shape: tuple | None = None  # of (x, y), the first batch's
        self.recorded_with: Any = None  # hyperparameters() when the graph was recorded
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.recordings = 0  # how many times a graph was recorded
        self.replays = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.shape is None:
            self.shape = (tuple(x.shape), tuple(y.shape))
        if (tuple(x.shape), tuple(y.shape)) != self.shape:
            return self.eager(x, y)  # the odd last batch
        if self.warmup_left > 0:
            self.warmup_left -= 1
            with on_side_stream(self.stream):
                return self.eager(x, y)
        if self.recorded_with is None or self.hyperparameters() != self.recorded_with:
            self._record(x, y)
        self.static[0].copy_(x)
        self.static[1].copy_(y)
        self.recorder.replay()
        self.replays += 1
        self.after_replay()
        return self.recorder.outputs.clone()  # the recorded output is overwritten next time

    def _record(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record the step on static copies of (x, y); nothing is computed (the caller
        replays it)."""
        self.recorder.reset()
        self.static = (torch.empty_like(x), torch.empty_like(y))  # x's memory format kept
        self.static[0].copy_(x)
        self.static[1].copy_(y)
        self.prepare()
        self.recorder.capture(lambda: self.record(*self.static))
        self.recorded_with = self.hyperparameters()
        self.recordings += 1
