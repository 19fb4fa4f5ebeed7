"""Solana: the FROST-Ed25519 group key is the account address."""
