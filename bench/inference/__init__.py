"""Running a network exit by exit: real early exits (a batch shrinks as images leave) and
the same decisions simulated from a full forward."""
from bench.inference.early_exit import early_exit, simulate

__all__ = ["early_exit", "simulate"]
