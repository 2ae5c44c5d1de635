"""How a step runs on a device: numerical precision (autocast, gradient scaling) and
compiled forwards."""
