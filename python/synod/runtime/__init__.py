"""Runtime: per-node services that read the state, act (sign, broadcast, watch), and write
results back as transactions (seed 000 §5.2). Nothing here decides anything about funds."""
