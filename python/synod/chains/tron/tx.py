"""TRON transactions built offline: TRX (TransferContract) and TRC-20 (TriggerSmartContract).

A TRON transaction is the protobuf `Transaction.raw` of java-tron's `Tron.proto`; its id
is SHA-256 of those bytes and the owner signs that id with secp256k1 ECDSA (65 bytes,
r ‖ s ‖ recovery id). Only the handful of fields a transfer needs are encoded here,
in field-number order as java-tron serializes them, so the bytes (and the id) match
what a node computes. The reference block (bytes 6..8 of the block number and bytes
8..16 of the block id) comes from the node adapter and bounds the validity window.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import base58

TRANSFER_CONTRACT = 1
TRIGGER_SMART_CONTRACT = 31
TYPE_URL = "type.googleapis.com/protocol."
TRC20_TRANSFER = bytes.fromhex("a9059cbb")  # transfer(address,uint256)


# -- minimal protobuf wire encoding (varint and length-delimited fields only) --


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value if value else b""


# -- addresses ------------------------------------------------------------------


def address_to_raw(address: str) -> bytes:
    """Base58check `T...` or hex `41...` to the 21-byte raw address."""
    if address.startswith("T"):
        raw = base58.b58decode_check(address)
    else:
        raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 21 or raw[0] != 0x41:
        raise ValueError(f"not a TRON address: {address!r}")
    return raw


@dataclass(frozen=True)
class RefBlock:
    """The reference block a transaction is bound to (from the node)."""

    number: int
    block_id: bytes  # 32 bytes; its first 8 bytes are the block number

    @property
    def ref_block_bytes(self) -> bytes:
        return self.number.to_bytes(8, "big")[6:8]

    @property
    def ref_block_hash(self) -> bytes:
        return self.block_id[8:16]


@dataclass(frozen=True)
class TronTransaction:
    """An unsigned transaction: `raw` is what java-tron hashes; `txid` is what the owner signs."""

    raw: bytes

    @property
    def txid(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    def attach(self, signature65: bytes) -> bytes:
        """The signed `Transaction` message: raw_data (field 1) and one signature (field 2)."""
        if len(signature65) != 65:
            raise ValueError("a TRON signature is 65 bytes: r ‖ s ‖ recovery id")
        return _field_bytes(1, self.raw) + _field_bytes(2, signature65)


def _contract(kind: int, name: str, parameter: bytes) -> bytes:
    any_msg = _field_bytes(1, (TYPE_URL + name).encode()) + _field_bytes(2, parameter)
    return _field_varint(1, kind) + _field_bytes(2, any_msg)


def _raw(
    contract: bytes,
    ref: RefBlock,
    expiration_ms: int,
    timestamp_ms: int,
    fee_limit: int = 0,
) -> bytes:
    return (
        _field_bytes(1, ref.ref_block_bytes)
        + _field_bytes(4, ref.ref_block_hash)
        + _field_varint(8, expiration_ms)
        + _field_bytes(11, contract)
        + _field_varint(14, timestamp_ms)
        + _field_varint(18, fee_limit)
    )


def trx_transfer(
    owner: str, to: str, amount_sun: int, ref: RefBlock, expiration_ms: int, timestamp_ms: int
) -> TronTransaction:
    parameter = (
        _field_bytes(1, address_to_raw(owner))
        + _field_bytes(2, address_to_raw(to))
        + _field_varint(3, amount_sun)
    )
    contract = _contract(TRANSFER_CONTRACT, "TransferContract", parameter)
    return TronTransaction(_raw(contract, ref, expiration_ms, timestamp_ms))


def trc20_transfer(
    owner: str,
    token_contract: str,
    to: str,
    amount: int,
    ref: RefBlock,
    expiration_ms: int,
    timestamp_ms: int,
    fee_limit_sun: int,
) -> TronTransaction:
    """`transfer(to, amount)` on a TRC-20 contract; the ABI takes the 20-byte address."""
    data = TRC20_TRANSFER + address_to_raw(to)[1:].rjust(32, b"\0") + amount.to_bytes(32, "big")
    parameter = (
        _field_bytes(1, address_to_raw(owner))
        + _field_bytes(2, address_to_raw(token_contract))
        + _field_bytes(4, data)
    )
    contract = _contract(TRIGGER_SMART_CONTRACT, "TriggerSmartContract", parameter)
    return TronTransaction(_raw(contract, ref, expiration_ms, timestamp_ms, fee_limit_sun))
