"""TRON addresses: 0x41 ‖ EVM account id, base58check-encoded."""

from __future__ import annotations

import base58

from synod.chains.evm.address import address_bytes


def tron_address(public_key: bytes) -> str:
    return base58.b58encode_check(b"\x41" + address_bytes(public_key)).decode("ascii")
