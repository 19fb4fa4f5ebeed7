"""Chain adapters, one package per chain family (bitcoin, evm, tron, solana)."""
