"""State: the deterministic transaction handlers and their stores, and each node's local
session store (nonces, secrets) used for crash recovery."""
