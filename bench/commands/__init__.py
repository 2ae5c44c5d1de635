"""The CLI's commands: one module each, ``main(args) -> exit code``."""
from bench.commands import report, results, run, tune

COMMANDS = {"run": run.main, "results": results.main, "report": report.main, "tune": tune.main}

__all__ = ["COMMANDS"]
