"""boostnet-bench: a benchmark and ablation harness for early-exit dynamic networks."""

__version__ = "0.1.0"
