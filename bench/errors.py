"""The errors that mean "bad input from the user": the CLI prints them in one line, without a
traceback, and exits with code 2."""
from __future__ import annotations


class UsageError(Exception):
    """Bad arguments or input; the message says what is wrong and where."""


class SuiteError(UsageError):
    """A suite that cannot be run: the message names the file, the key path and the problem."""

    def __init__(self, file: str, path: str, message: str):
        self.file, self.path, self.message = file, path, message
        super().__init__(f"{file}: {path}: {message}" if path else f"{file}: {message}")
