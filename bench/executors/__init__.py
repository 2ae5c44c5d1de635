"""Executors hand a suite's runs to the pipeline (bench.pipeline.runner.run_one).

``local`` (bench.executors.local): this process, or every rank of a torchrun job, runs them
in order; several such workers may share a suite through per-run claims.
"""
