"""ranet (being written)."""
