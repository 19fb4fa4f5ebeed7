"""TRON addresses: 0x41 ‖ EVM account id, base58check-encoded."""

from __future__ import annotations

import base58

from synod.chains.evm.address import address_bytes


def tron_address(public_key: bytes) -> str:
    return base58.b58encode_check(b"\x41" + address_bytes(public_key)).decode("ascii")


def parse_address(text: str) -> bytes:
    """The 20-byte account id of a base58check TRON address (version byte 0x41); a mistyped
    address fails its checksum and is refused."""
    try:
        raw = base58.b58decode_check(text)
    except ValueError:
        raise ValueError(f"not a TRON address (bad base58check): {text!r}") from None
    if len(raw) != 21 or raw[0] != 0x41:
        raise ValueError(f"not a TRON address (needs version 0x41 and 20 bytes): {text!r}")
    return raw[1:]
