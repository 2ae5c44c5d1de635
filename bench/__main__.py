"""``python -m bench`` and the ``bench`` script (pyproject.toml points at :func:`main`
here): a Ctrl-C while the harness's modules (torch, ...) are still loading ends in one
line and exit code 130, like one later on (bench.cli), not in a traceback of the imports."""
import signal
import sys


def _interrupted_while_loading(signum, frame):
    print("interrupted", file=sys.stderr)
    raise SystemExit(130)


_previous = signal.signal(signal.SIGINT, _interrupted_while_loading)
from bench.cli import main  # noqa: E402 (after the handler: this import takes seconds)

signal.signal(signal.SIGINT, _previous)

if __name__ == "__main__":
    sys.exit(main())
