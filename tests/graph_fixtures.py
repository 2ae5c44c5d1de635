"""A stand-in for torch.cuda's graph recorder, so the CUDA-graph bookkeeping is tested on a
CPU (bench.engine.cuda_graphs.Recorder's interface)."""


class ReRun:
    """Stands in for torch.cuda.graph on a CPU: recording keeps the function and runs
    nothing; a replay runs it (on the static inputs it closes over)."""

    def __init__(self):
        self.fn, self.outputs = None, None

    def capture(self, fn):
        self.fn, self.outputs = fn, None

    def replay(self):
        self.outputs = self.fn()

    def reset(self):
        self.fn = None
