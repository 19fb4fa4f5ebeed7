"""Contract mode: withdrawals from `contracts/Custody.vy`, authorised by a FROST (BIP340)
signature of the committee's group key instead of an EOA key.

The digests here must match the contract byte for byte; every field is one 32-byte ABI word
(unsigned integers big-endian, addresses and 20-byte values left-padded with zeros):

    withdraw:   keccak256(WITHDRAW_TAG ‖ withdraw_id ‖ chain_id ‖ contract ‖ asset ‖ to
                          ‖ amount ‖ fee_cap ‖ deadline ‖ epoch)
    update key: keccak256(UPDATE_TAG ‖ new_px ‖ chain_id ‖ contract ‖ next_epoch)

with WITHDRAW_TAG = keccak256("synod.custody.withdraw.v1"),
UPDATE_TAG = keccak256("synod.custody.update-key.v1"), withdraw_id = keccak256(UTF-8 of the
ledger's withdraw id), asset = the token contract or 20 zero bytes for the native coin. The
32-byte digest is the BIP340 message the committee signs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synod.chains.evm.address import keccak256, parse_address
from synod.crypto.ecdsa import CURVE_ORDER
from synod.state.transactions import CHAINS

WITHDRAW_TAG = keccak256(b"synod.custody.withdraw.v1")
UPDATE_TAG = keccak256(b"synod.custody.update-key.v1")
NATIVE = bytes(20)  # `asset` for the chain's native coin
EVM_CHAINS = ("eth", "bnb")

SECP256K1_P = 2**256 - 2**32 - 977
SECP256K1_N = CURVE_ORDER

WITHDRAW_SIGNATURE = "withdraw(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)"
UPDATE_PUBKEY_SIGNATURE = "updatePubkey(uint256,uint256,uint256)"


def selector(signature: str) -> bytes:
    """The 4-byte ABI function selector."""
    return keccak256(signature.encode("ascii"))[:4]


def uint_word(value: int) -> bytes:
    if not 0 <= value < 2**256:
        raise ValueError(f"uint256 out of range: {value}")
    return value.to_bytes(32, "big")


def bytes_word(value: bytes, size: int) -> bytes:
    """A fixed-size byte string as an ABI word: left-padded, as `address` and `uint` are."""
    if len(value) != size:
        raise ValueError(f"expected {size} bytes, got {len(value)}")
    return value.rjust(32, b"\x00")


def decimal_amount(text: str) -> int:
    """A template amount: plain ASCII digits only (no sign, spaces or underscores)."""
    if not (isinstance(text, str) and text.isascii() and text.isdigit()):
        raise ValueError(f"amount must be a decimal string: {text!r}")
    return int(text)


def withdraw_id_bytes(withdraw_id: str) -> bytes:
    """The contract's 32-byte id for a ledger withdraw id (ids are free-form strings)."""
    return keccak256(withdraw_id.encode("utf-8"))


def valid_group_key(px: bytes) -> bool:
    """Whether the contract accepts this x-only key: 0 < x < n (ecrecover takes it as r) and
    x³ + 7 a square mod p (so the even-y point exists)."""
    if len(px) != 32:
        return False
    x = int.from_bytes(px, "big")
    if not 0 < x < SECP256K1_N:
        return False
    c = (pow(x, 3, SECP256K1_P) + 7) % SECP256K1_P
    y = pow(c, (SECP256K1_P + 1) // 4, SECP256K1_P)
    return y * y % SECP256K1_P == c


def _signature_words(signature: bytes) -> bytes:
    if len(signature) != 64:
        raise ValueError("a BIP340 signature is 64 bytes (R.x ‖ s)")
    return signature  # R.x and s are already two big-endian words


@dataclass(frozen=True)
class WithdrawCall:
    """One `Custody.withdraw` call; `digest()` is what the committee signs."""

    chain_id: int
    contract: bytes  # 20 bytes
    withdraw_id: bytes  # 32 bytes, see `withdraw_id_bytes`
    asset: bytes  # 20 bytes, NATIVE for the native coin
    to: bytes  # 20 bytes
    amount: int
    fee_cap: int  # highest gas price (wei per gas) it may be mined at
    deadline: int  # unix seconds, compared with block.timestamp
    epoch: int  # the contract's key epoch the signature is for

    def digest(self) -> bytes:
        return withdraw_digest(
            chain_id=self.chain_id,
            contract=self.contract,
            withdraw_id=self.withdraw_id,
            asset=self.asset,
            to=self.to,
            amount=self.amount,
            fee_cap=self.fee_cap,
            deadline=self.deadline,
            epoch=self.epoch,
        )

    def calldata(self, signature: bytes) -> bytes:
        """ABI-encoded call with the 64-byte BIP340 signature attached."""
        return (
            selector(WITHDRAW_SIGNATURE)
            + bytes_word(self.withdraw_id, 32)
            + bytes_word(self.asset, 20)
            + bytes_word(self.to, 20)
            + uint_word(self.amount)
            + uint_word(self.fee_cap)
            + uint_word(self.deadline)
            + _signature_words(signature)
        )


@dataclass(frozen=True)
class UpdatePubkeyCall:
    """One `Custody.updatePubkey` call; signed by the CURRENT key over the new one."""

    chain_id: int
    contract: bytes  # 20 bytes
    new_px: bytes  # 32-byte x-only key of the next committee
    next_epoch: int  # the contract's epoch + 1

    def digest(self) -> bytes:
        return update_key_digest(
            chain_id=self.chain_id,
            contract=self.contract,
            new_px=self.new_px,
            next_epoch=self.next_epoch,
        )

    def calldata(self, signature: bytes) -> bytes:
        return (
            selector(UPDATE_PUBKEY_SIGNATURE)
            + bytes_word(self.new_px, 32)
            + _signature_words(signature)
        )


def withdraw_digest(
    *,
    chain_id: int,
    contract: bytes,
    withdraw_id: bytes,
    asset: bytes,
    to: bytes,
    amount: int,
    fee_cap: int,
    deadline: int,
    epoch: int,
) -> bytes:
    """The 32-byte message of a withdrawal (see the module docstring for the layout)."""
    return keccak256(
        WITHDRAW_TAG
        + bytes_word(withdraw_id, 32)
        + uint_word(chain_id)
        + bytes_word(contract, 20)
        + bytes_word(asset, 20)
        + bytes_word(to, 20)
        + uint_word(amount)
        + uint_word(fee_cap)
        + uint_word(deadline)
        + uint_word(epoch)
    )


def update_key_digest(*, chain_id: int, contract: bytes, new_px: bytes, next_epoch: int) -> bytes:
    """The 32-byte message that rotates the contract to `new_px` at `next_epoch`."""
    return keccak256(
        UPDATE_TAG
        + bytes_word(new_px, 32)
        + uint_word(chain_id)
        + bytes_word(contract, 20)
        + uint_word(next_epoch)
    )


def constructor_args(px: bytes) -> bytes:
    """ABI arguments appended to the contract's init code at deployment."""
    if not valid_group_key(px):
        raise ValueError("the contract cannot hold this key (x ≥ n or not on the curve)")
    return bytes_word(px, 32)


def asset_address(template: Mapping[str, Any], tokens: Mapping[str, str]) -> bytes:
    """NATIVE for the chain's coin, else the token contract the caller maps the symbol to."""
    chain, asset = template["chain"], template["asset"]
    if chain not in EVM_CHAINS:
        raise ValueError(f"not an EVM chain: {chain!r}")
    if asset == CHAINS[chain]:
        return NATIVE
    if asset not in tokens:
        raise ValueError(f"no token contract configured for {asset!r} on {chain}")
    return parse_address(tokens[asset])


def build_withdraw_call(
    template: Mapping[str, Any],
    *,
    chain_id: int,
    contract: str,
    fee_cap: int,
    deadline: int,
    epoch: int,
    tokens: Mapping[str, str] | None = None,
) -> WithdrawCall:
    """The call for a ledger template. Everything not in the template is an explicit input,
    so every node derives the same digest from the same recorded template."""
    return WithdrawCall(
        chain_id=chain_id,
        contract=parse_address(contract),
        withdraw_id=withdraw_id_bytes(template["withdraw_id"]),
        asset=asset_address(template, tokens or {}),
        to=parse_address(template["to"]),
        amount=decimal_amount(template["amount"]),
        fee_cap=fee_cap,
        deadline=deadline,
        epoch=epoch,
    )


def build_call(
    template: Mapping[str, Any],
    *,
    chain_id: int,
    contract: str,
    fee_cap: int,
    deadline: int,
    epoch: int,
    tokens: Mapping[str, str] | None = None,
) -> WithdrawCall | UpdatePubkeyCall:
    """The contract call of any recorded template: a withdrawal, or a power transition's key
    update (`kind` "update_pubkey", which records the contract epoch it moves to, so the
    digest follows from the template alone)."""
    if template.get("kind") == "update_pubkey":
        return UpdatePubkeyCall(
            chain_id=chain_id,
            contract=parse_address(contract),
            new_px=bytes.fromhex(str(template["new_key"])),
            next_epoch=int(template["contract_epoch"]),
        )
    return build_withdraw_call(
        template,
        chain_id=chain_id,
        contract=contract,
        fee_cap=fee_cap,
        deadline=deadline,
        epoch=epoch,
        tokens=tokens,
    )
