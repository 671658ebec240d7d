"""Tools built on the engine and the run layer: the throughput bench."""
