"""The training engine: one epoch loop for a pack of 1..K runs, its step, fused networks, checkpoints and metrics."""
