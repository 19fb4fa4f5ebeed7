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
