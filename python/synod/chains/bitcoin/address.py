"""Bitcoin P2TR (witness v1) addresses, BIP341 output key encoded with bech32m (BIP350)."""

from __future__ import annotations

import enum

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3


class Network(enum.Enum):
    """Bitcoin networks and their bech32 human-readable part."""

    MAINNET = "bc"
    TESTNET = "tb"
    SIGNET = "tb"  # signet shares testnet's prefix
    REGTEST = "bcrt"


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data: bytes, frombits: int, tobits: int) -> list[int]:
    acc = bits = 0
    out = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if bits:
        out.append((acc << (tobits - bits)) & maxv)
    return out


def segwit_address(hrp: str, version: int, program: bytes) -> str:
    """Encode a witness program (bech32m for version >= 1, per BIP350)."""
    if version < 1 or not 2 <= len(program) <= 40:
        raise ValueError("only witness v1+ programs of 2..40 bytes are encoded here")
    data = [version, *_convertbits(program, 8, 5)]
    values = _hrp_expand(hrp) + data
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def p2tr_address(output_key: bytes, network: Network = Network.MAINNET) -> str:
    """The P2TR address paying to a (tweaked) x-only output key."""
    if len(output_key) != 32:
        raise ValueError("a Taproot output key is 32 bytes (x-only)")
    return segwit_address(network.value, 1, output_key)
