"""EOA mode: ordinary Ethereum transactions from the threshold-ECDSA (CGGMP) group address.

The committee signs `tx.digest()`; `tx.signed(signature)` attaches the `ecdsa.Signature`
and gives the raw bytes to broadcast. Both EIP-1559 (type 2) and legacy EIP-155 are built,
since not every EVM chain or RPC takes type 2. RLP comes from the `rlp` package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import coincurve
import rlp

from synod.chains.evm.address import address_bytes, keccak256, parse_address
from synod.chains.evm.custody import (
    NATIVE,
    asset_address,
    bytes_word,
    decimal_amount,
    selector,
    uint_word,
)
from synod.crypto import ecdsa

AccessList = tuple[tuple[bytes, tuple[bytes, ...]], ...]


def _to_field(to: bytes | None) -> bytes:
    if to is None:
        return b""  # contract creation
    if len(to) != 20:
        raise ValueError("`to` is a 20-byte address")
    return to


@dataclass(frozen=True)
class Eip1559Transaction:
    """A type-2 transaction (EIP-1559); fields as in the EIP, all explicit."""

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes | None
    value: int
    data: bytes = b""
    access_list: AccessList = ()

    TYPE = 2

    def _fields(self) -> list[Any]:
        return [
            self.chain_id,
            self.nonce,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas,
            _to_field(self.to),
            self.value,
            self.data,
            [[address, list(keys)] for address, keys in self.access_list],
        ]

    def digest(self) -> bytes:
        """keccak256(0x02 ‖ rlp(fields)): the 32 bytes the committee signs."""
        return keccak256(bytes([self.TYPE]) + rlp.encode(self._fields()))

    def signed(self, signature: ecdsa.Signature) -> bytes:
        """0x02 ‖ rlp(fields ‖ y_parity ‖ r ‖ s): the raw transaction to broadcast."""
        fields = [*self._fields(), signature.recovery_id, signature.r, signature.s]
        return bytes([self.TYPE]) + cast(bytes, rlp.encode(fields))


@dataclass(frozen=True)
class LegacyTransaction:
    """A legacy transaction with EIP-155 replay protection (chain id in the signature)."""

    chain_id: int
    nonce: int
    gas_price: int
    gas: int
    to: bytes | None
    value: int
    data: bytes = b""

    def _fields(self) -> list[Any]:
        return [self.nonce, self.gas_price, self.gas, _to_field(self.to), self.value, self.data]

    def digest(self) -> bytes:
        """keccak256(rlp(fields ‖ chain_id ‖ 0 ‖ 0)), per EIP-155."""
        return keccak256(rlp.encode([*self._fields(), self.chain_id, 0, 0]))

    def signed(self, signature: ecdsa.Signature) -> bytes:
        """rlp(fields ‖ v ‖ r ‖ s) with v = recovery_id + 35 + 2·chain_id."""
        v = signature.recovery_id + 35 + 2 * self.chain_id
        return cast(bytes, rlp.encode([*self._fields(), v, signature.r, signature.s]))


Transaction = Eip1559Transaction | LegacyTransaction


def transaction_hash(raw: bytes) -> bytes:
    """The txid: keccak256 of the raw signed bytes (for both kinds)."""
    return keccak256(raw)


def _int(field: bytes) -> int:
    return int.from_bytes(field, "big")


def recover_sender(raw: bytes) -> bytes:
    """The 20-byte sender of a raw signed type-2 or EIP-155 transaction, recomputed from the
    bytes alone, so what is about to be broadcast can be checked against the group address."""
    if raw[:1] == bytes([Eip1559Transaction.TYPE]):
        items = cast(list[Any], rlp.decode(raw[1:]))
        if len(items) != 12:
            raise ValueError("type-2 transaction: expected 12 fields")
        digest = keccak256(raw[:1] + rlp.encode(items[:9]))
        parity = _int(items[9])
    elif raw[:1] and raw[0] >= 0xC0:
        items = cast(list[Any], rlp.decode(raw))
        if len(items) != 9:
            raise ValueError("legacy transaction: expected 9 fields")
        v = _int(items[6])
        if v < 35:
            raise ValueError("legacy transaction without EIP-155 replay protection")
        chain_id, parity = (v - 35) // 2, (v - 35) % 2
        digest = keccak256(rlp.encode([*items[:6], chain_id, 0, 0]))
    else:
        raise ValueError("unsupported transaction type")
    if parity not in (0, 1):
        raise ValueError("bad signature parity")
    r, s = _int(items[-2]), _int(items[-1])
    if not (0 < r < ecdsa.CURVE_ORDER and 0 < s <= ecdsa.CURVE_ORDER // 2):
        raise ValueError("r, s out of range or s not low (EIP-2)")
    recoverable = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([parity])
    key = coincurve.PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
    return address_bytes(key.format())


def sign_checked(tx: Transaction, signature: ecdsa.Signature, group_public_key: bytes) -> bytes:
    """Attach the signature and refuse the result unless it recovers to the group address:
    a signature over the wrong digest or key never reaches the network."""
    raw = tx.signed(signature)
    if recover_sender(raw) != address_bytes(group_public_key):
        raise ValueError("signature does not recover to the group address")
    return raw


def erc20_transfer_data(to: bytes, amount: int) -> bytes:
    """Calldata of ERC-20 `transfer(to, amount)`."""
    return selector("transfer(address,uint256)") + bytes_word(to, 20) + uint_word(amount)


def payment(
    template: Mapping[str, Any], tokens: Mapping[str, str] | None = None
) -> tuple[bytes, int, bytes]:
    """`(to, value, data)` paying a ledger template from the EOA: a plain value transfer for
    the native coin, a `transfer` call on the token contract otherwise."""
    asset = asset_address(template, tokens or {})
    to = parse_address(template["to"])
    amount = decimal_amount(template["amount"])
    if asset == NATIVE:
        return to, amount, b""
    return asset, 0, erc20_transfer_data(to, amount)


def template_transaction(
    template: Mapping[str, Any],
    chain_id: int,
    max_fee_per_gas: int,
    gas_limit: int,
    max_priority_fee_per_gas: int | None = None,
    tokens: Mapping[str, str] | None = None,
) -> Eip1559Transaction:
    """The EIP-1559 transaction paying a reserved template from the EOA.

    The nonce is the one the ledger fixed at reservation (`Ledger(nonce_chains=...)`), so
    every transaction ever signed for this withdrawal shares it and at most one executes.
    The gas the transaction may burn must fit in the fee the ledger reserved.
    """
    if "nonce" not in template:
        raise ValueError(
            f"{template.get('withdraw_id')}: template has no account nonce "
            "(reserve it on a ledger with this chain in `nonce_chains`)"
        )
    worst_case = max_fee_per_gas * gas_limit
    if worst_case > int(template["fee"]):
        raise ValueError(
            f"{template['withdraw_id']}: up to {worst_case} wei of gas exceeds the "
            f"reserved fee {template['fee']}"
        )
    to, value, data = payment(template, tokens)
    priority = max_fee_per_gas if max_priority_fee_per_gas is None else max_priority_fee_per_gas
    return Eip1559Transaction(
        chain_id, int(template["nonce"]), priority, max_fee_per_gas, gas_limit, to, value, data
    )
