"""EVM addresses (Ethereum, BNB Chain): last 20 bytes of keccak256 of the uncompressed key."""

from __future__ import annotations

import coincurve
from Crypto.Hash import keccak


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def address_bytes(public_key: bytes) -> bytes:
    """20-byte account id from a SEC1 (33- or 65-byte) secp256k1 public key."""
    uncompressed = coincurve.PublicKey(public_key).format(compressed=False)
    return keccak256(uncompressed[1:])[-20:]


def checksum_address(raw: bytes) -> str:
    """EIP-55 mixed-case checksum encoding."""
    hex_addr = raw.hex()
    digest = keccak256(hex_addr.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(hex_addr)
    )


def evm_address(public_key: bytes) -> str:
    return checksum_address(address_bytes(public_key))


def parse_address(text: str) -> bytes:
    """20 bytes from `0x`-hex; a mixed-case address must carry a valid EIP-55 checksum, so a
    mistyped destination is refused instead of paid."""
    if len(text) != 42 or text[:2] not in ("0x", "0X"):
        raise ValueError(f"not an EVM address: {text!r}")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raise ValueError(f"not an EVM address: {text!r}") from None
    body = text[2:]
    if body != body.lower() and body != body.upper() and checksum_address(raw) != "0x" + body:
        raise ValueError(f"bad EIP-55 checksum: {text!r}")
    return raw
