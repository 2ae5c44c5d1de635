class DatasetNotFound(FileNotFoundError):
    """A data set's files are missing; the message says where they were expected and how
    to get them."""
