"""The CLI's commands: one module each, ``main(args) -> exit code``."""
from bench.commands import evaluate, export, latency, report, results, run, speed, tune

COMMANDS = {"run": run.main, "results": results.main, "report": report.main, "tune": tune.main,
            "latency": latency.main, "export": export.main,
            "evaluate": evaluate.main, "speed": speed.main}

__all__ = ["COMMANDS"]
