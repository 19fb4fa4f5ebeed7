"""Solana addresses: the base58 encoding of the 32-byte Ed25519 public key."""

from __future__ import annotations

import base58


def solana_address(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return base58.b58encode(public_key).decode("ascii")


def parse_address(text: str) -> bytes:
    """The 32 bytes of a Solana address, which must be their canonical base58 encoding."""
    try:
        raw = base58.b58decode(text)
    except ValueError:
        raise ValueError(f"not a Solana address (bad base58): {text!r}") from None
    if len(raw) != 32 or base58.b58encode(raw).decode("ascii") != text:
        raise ValueError(f"not a Solana address (needs 32 bytes, canonical base58): {text!r}")
    return raw
