"""msdnet (being written)."""
