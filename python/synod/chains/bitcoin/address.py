"""Bitcoin addresses: segwit (bech32 for v0 per BIP173, bech32m for v1+ per BIP350, so P2TR
output keys per BIP341) and legacy base58check, both ways, and the scriptPubKey each pays to.

Decoding is strict (checksum variant tied to the witness version, no mixed case, zero padding)
because a withdrawal must never pay a script other than the one the requester meant.
"""

from __future__ import annotations

import enum

import base58

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3
_MAX_BECH32_LENGTH = 90


class AddressError(ValueError):
    """The string is not a valid address (for the expected network)."""


class Network(enum.Enum):
    """Bitcoin networks and their bech32 human-readable part."""

    MAINNET = "bc"
    TESTNET = "tb"
    SIGNET = "tb"  # signet shares testnet's prefix
    REGTEST = "bcrt"

    @property
    def base58_prefixes(self) -> tuple[int, int]:
        """Version bytes of (P2PKH, P2SH) base58 addresses; regtest uses testnet's."""
        return (0x00, 0x05) if self is Network.MAINNET else (0x6F, 0xC4)


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


def _unpack5(data: list[int]) -> bytes:
    """5-bit groups back to bytes; the padding must be under 5 bits and all zero (BIP173)."""
    acc = bits = 0
    out = bytearray()
    for value in data:
        acc = (acc << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        raise AddressError("invalid bech32 padding")
    return bytes(out)


def _check_program(version: int, program: bytes) -> None:
    if not 0 <= version <= 16:
        raise AddressError(f"witness version {version} is out of range 0..16")
    if not 2 <= len(program) <= 40:
        raise AddressError(f"a witness program is 2..40 bytes, got {len(program)}")
    if version == 0 and len(program) not in (20, 32):
        raise AddressError("a witness v0 program is 20 (P2WPKH) or 32 (P2WSH) bytes")


def segwit_address(hrp: str, version: int, program: bytes) -> str:
    """Encode a witness program (bech32 for v0, bech32m for version >= 1, per BIP350)."""
    _check_program(version, program)
    data = [version, *_convertbits(program, 8, 5)]
    values = _hrp_expand(hrp) + data
    const = _BECH32_CONST if version == 0 else _BECH32M_CONST
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def p2tr_address(output_key: bytes, network: Network = Network.MAINNET) -> str:
    """The P2TR address paying to a (tweaked) x-only output key."""
    if len(output_key) != 32:
        raise ValueError("a Taproot output key is 32 bytes (x-only)")
    return segwit_address(network.value, 1, output_key)


def decode_segwit_address(address: str) -> tuple[str, int, bytes]:
    """(hrp, witness version, program) of a segwit address, checksum variant enforced."""
    if address.lower() != address and address.upper() != address:
        raise AddressError("mixed-case bech32 string")
    if len(address) > _MAX_BECH32_LENGTH:
        raise AddressError("bech32 string too long")
    if any(not 33 <= ord(c) <= 126 for c in address):
        raise AddressError("bech32 string has characters outside US-ASCII 33..126")
    text = address.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise AddressError("no bech32 separator, or an empty part")
    hrp = text[:pos]
    try:
        data = [_CHARSET.index(c) for c in text[pos + 1 :]]
    except ValueError:
        raise AddressError("character outside the bech32 alphabet") from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        raise AddressError("bad bech32 checksum")
    payload = data[:-6]
    if not payload:
        raise AddressError("no witness version")
    version = payload[0]
    program = _unpack5(payload[1:])
    _check_program(version, program)
    if (version == 0) != (const == _BECH32_CONST):
        raise AddressError("witness v0 needs bech32, v1+ needs bech32m (BIP350)")
    return hrp, version, program


def witness_script(version: int, program: bytes) -> bytes:
    """scriptPubKey of a witness program: OP_n <program>."""
    _check_program(version, program)
    return bytes([0x50 + version if version else 0, len(program)]) + program


def address_script(address: str, network: Network) -> bytes:
    """The scriptPubKey an address pays to on `network` (segwit, P2PKH or P2SH)."""
    if not address:
        raise AddressError("empty address")
    try:
        hrp, version, program = decode_segwit_address(address)
    except AddressError:
        if address.lower().startswith(network.value + "1"):
            raise
    else:
        if hrp != network.value:
            raise AddressError(f"segwit address for hrp {hrp!r}, not {network.value!r}")
        return witness_script(version, program)
    try:
        raw = base58.b58decode_check(address)
    except ValueError:
        raise AddressError(f"not a {network.name.lower()} address: {address!r}") from None
    if len(raw) != 21:
        raise AddressError("a base58 address carries a version byte and a 20-byte hash")
    p2pkh, p2sh = network.base58_prefixes
    if raw[0] == p2pkh:
        return b"\x76\xa9\x14" + raw[1:] + b"\x88\xac"
    if raw[0] == p2sh:
        return b"\xa9\x14" + raw[1:] + b"\x87"
    raise AddressError(f"base58 version byte {raw[0]:#04x} is not for {network.name.lower()}")


def script_address(script: bytes, network: Network) -> str:
    """The address of a standard scriptPubKey (inverse of `address_script`)."""
    p2pkh, p2sh = network.base58_prefixes
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return str(base58.b58encode_check(bytes([p2pkh]) + script[3:23]).decode())
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return str(base58.b58encode_check(bytes([p2sh]) + script[2:22]).decode())
    if 4 <= len(script) <= 42 and script[1] == len(script) - 2:
        op = script[0]
        if op == 0 or 0x51 <= op <= 0x60:
            return segwit_address(network.value, op - 0x50 if op else 0, script[2:])
    raise AddressError(f"no address form for script {script.hex()}")


def p2tr_script(output_key: bytes) -> bytes:
    """scriptPubKey paying to a Taproot output key: OP_1 <32 bytes>."""
    if len(output_key) != 32:
        raise ValueError("a Taproot output key is 32 bytes (x-only)")
    return witness_script(1, output_key)
