class DatasetNotFound(FileNotFoundError):
    """A data set's files are missing; the message says where they were expected and how
    to get them."""


class MissingDependency(ImportError):
    """A data set needs a package that is not installed (or does not match torch); the
    message says which and how to install it."""
