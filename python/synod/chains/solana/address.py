"""Solana addresses: the base58 encoding of the 32-byte Ed25519 public key."""

from __future__ import annotations

import base58


def solana_address(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return base58.b58encode(public_key).decode("ascii")
