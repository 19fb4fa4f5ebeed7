"""Deterministic network simulator: virtual clock, lossy links, partitions, crashes and
Byzantine signers, driving the same sans-I/O sessions a node runs. Same seed, same run."""
