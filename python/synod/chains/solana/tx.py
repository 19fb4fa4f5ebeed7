"""Solana withdrawal transactions, built deterministically from the custody template.

The message is a pure function of (template, group key, recent blockhash, token registry), so
every co-signer can rebuild it from the recorded template and check what it is asked to sign
(`verify_message`) instead of trusting the coordinator's bytes. The FROST-Ed25519 group key is
the fee payer and the only signer, so one 64-byte threshold signature completes the
transaction, and its base58 form is the txid.

Instructions, in order:

1. compute budget (only when the template's fee exceeds the base fee): a unit limit of
   `SOL_COMPUTE_UNITS` and a unit price such that the priority fee never exceeds what the
   template reserved for it (Solana charges price x limit, not the units actually used; a
   token template's fee also holds the token account rent, which is not spent on priority);
2. for a token: the recipient's associated token account, created idempotently (a no-op when
   it exists; otherwise the group account pays its rent — see `ATA_RENT_NOTE`);
3. the transfer: System `Transfer` for SOL, SPL Token `TransferChecked` (amount *and* decimals
   checked by the token program, so a wrong registry entry fails instead of paying 10^k);
4. a memo ``synod:<withdraw_id>``: it binds the message to one withdrawal, so two withdrawals of
   the same amount to the same address never share a message (validators de-duplicate by
   message hash, and a signature for one must never be valid for the other).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash, ParseHashError
from solders.instruction import AccountMeta, Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.token import ID as TOKEN_PROGRAM_ID
from solders.token.associated import get_associated_token_address
from solders.transaction import Transaction

from synod.state.fees import (
    SOL_BASE_FEE_LAMPORTS,
    SOL_COMPUTE_UNITS,
    SOL_TOKEN_ACCOUNT_RENT_LAMPORTS,
)

ASSOCIATED_TOKEN_PROGRAM_ID = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")

NATIVE_ASSET = "SOL"
U64_MAX = 2**64 - 1
MAX_MEMO_BYTES = 128
MICRO_LAMPORTS = 10**6

_TRANSFER_CHECKED = 12  # SPL Token instruction tag
_ATA_CREATE_IDEMPOTENT = 1  # Associated Token Account instruction tag

ATA_RENT_NOTE = (
    "creating a recipient's token account costs the payer the rent-exempt minimum for 165 bytes "
    "(2,039,280 lamports at current rent); the ledger reserves it in every token withdrawal's "
    "fee (synod.state.fees.SOL_TOKEN_ACCOUNT_RENT_LAMPORTS)"
)


class TokenInfo(NamedTuple):
    """One SPL token (classic Token program): its mint address and decimals."""

    mint: str
    decimals: int


TokenRegistry = Mapping[str, tuple[str, int]]
"""Asset symbol -> (mint address, decimals); `TokenInfo` values fit."""


class TemplateError(ValueError):
    """The template cannot be turned into a Solana transaction (nothing is signed)."""


def _digits(template: Mapping[str, Any], name: str) -> int:
    value = template.get(name)
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        raise TemplateError(f"{name} must be a decimal string, got {value!r}")
    n = int(value)
    if n > U64_MAX:
        raise TemplateError(f"{name} {n} does not fit in a u64")
    return n


def _pubkey(name: str, value: Any) -> Pubkey:
    if not isinstance(value, str):
        raise TemplateError(f"{name} must be a base58 address")
    try:
        key = Pubkey.from_string(value)
    except ValueError:
        raise TemplateError(f"{name} is not a Solana address: {value!r}") from None
    if str(key) != value:  # non-canonical base58 (e.g. leading '1's) would alias another string
        raise TemplateError(f"{name} is not in canonical base58: {value!r}")
    return key


def _blockhash(value: str) -> Hash:
    try:
        return Hash.from_string(value)
    except (ParseHashError, ValueError):
        raise TemplateError(f"not a blockhash: {value!r}") from None


def parse_template(template: Mapping[str, Any] | str) -> dict[str, Any]:
    """The template as a dict (from the state machine's canonical JSON text if given a str)."""
    if isinstance(template, str):
        try:
            template = json.loads(template)
        except ValueError as err:
            raise TemplateError(f"template is not JSON: {err}") from None
    if not isinstance(template, Mapping):
        raise TemplateError("a template is a JSON object")
    return dict(template)


def transfer_checked(
    source: Pubkey, mint: Pubkey, destination: Pubkey, owner: Pubkey, amount: int, decimals: int
) -> Instruction:
    """SPL Token `TransferChecked` (tag 12, u64 LE amount, u8 decimals)."""
    data = struct.pack("<BQB", _TRANSFER_CHECKED, amount, decimals)
    accounts = [
        AccountMeta(source, is_signer=False, is_writable=True),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=True, is_writable=False),
    ]
    return Instruction(TOKEN_PROGRAM_ID, data, accounts)


def create_ata_idempotent(payer: Pubkey, wallet: Pubkey, mint: Pubkey) -> Instruction:
    """Associated Token Account `CreateIdempotent`: succeeds whether or not the account exists."""
    ata = get_associated_token_address(wallet, mint, TOKEN_PROGRAM_ID)
    accounts = [
        AccountMeta(payer, is_signer=True, is_writable=True),
        AccountMeta(ata, is_signer=False, is_writable=True),
        AccountMeta(wallet, is_signer=False, is_writable=False),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
        AccountMeta(TOKEN_PROGRAM_ID, is_signer=False, is_writable=False),
    ]
    return Instruction(ASSOCIATED_TOKEN_PROGRAM_ID, bytes([_ATA_CREATE_IDEMPOTENT]), accounts)


def memo(text: str) -> Instruction:
    """SPL Memo v2 with no signer accounts (the memo only labels the transaction)."""
    return Instruction(MEMO_PROGRAM_ID, text.encode(), [])


def priority_price(fee: int) -> int:
    """Micro-lamports per compute unit so that base + priority fee <= the template's fee."""
    if fee < SOL_BASE_FEE_LAMPORTS:
        raise TemplateError(f"fee {fee} is below the base fee of {SOL_BASE_FEE_LAMPORTS} lamports")
    return (fee - SOL_BASE_FEE_LAMPORTS) * MICRO_LAMPORTS // SOL_COMPUTE_UNITS


def charged_fee(price_micro_lamports: int) -> int:
    """What the runtime charges one signature at this unit price (ceil of price x limit)."""
    priority = -(-price_micro_lamports * SOL_COMPUTE_UNITS // MICRO_LAMPORTS)
    return SOL_BASE_FEE_LAMPORTS + priority


def txid(signature: bytes) -> str:
    """A Solana transaction id is the base58 of its first (here: only) signature."""
    return str(Signature.from_bytes(signature))


@dataclass(frozen=True)
class SolanaTransfer:
    """One withdrawal as an unsigned legacy Solana transaction with a fixed recent blockhash."""

    withdraw_id: str
    payer: Pubkey
    asset: str
    recipient: Pubkey
    amount: int
    fee: int
    blockhash: Hash
    message: Message

    @classmethod
    def build(
        cls,
        template: Mapping[str, Any] | str,
        group_public_key: bytes,
        blockhash: Hash | str,
        tokens: TokenRegistry | None = None,
    ) -> SolanaTransfer:
        """Build from the template; raises `TemplateError` for anything not payable as-is."""
        t = parse_template(template)
        if t.get("chain") != "sol":
            raise TemplateError(f"not a Solana template (chain {t.get('chain')!r})")
        if t.get("fee_asset") != NATIVE_ASSET:
            raise TemplateError("Solana fees are paid in SOL")
        withdraw_id = t.get("withdraw_id")
        if not isinstance(withdraw_id, str) or not withdraw_id:
            raise TemplateError("withdraw_id must be a non-empty string")
        note = f"synod:{withdraw_id}"
        if len(note.encode()) > MAX_MEMO_BYTES:
            raise TemplateError(f"withdraw_id too long for the memo ({MAX_MEMO_BYTES} bytes)")
        if len(group_public_key) != 32:
            raise TemplateError("an Ed25519 group public key is 32 bytes")
        payer = Pubkey(group_public_key)
        recipient = _pubkey("to", t.get("to"))
        amount = _digits(t, "amount")
        if amount == 0:
            raise TemplateError("amount must be positive")
        fee = _digits(t, "fee")
        asset = t.get("asset")
        if not isinstance(asset, str) or not asset:
            raise TemplateError("asset must be a non-empty string")
        rent = 0 if asset == NATIVE_ASSET else SOL_TOKEN_ACCOUNT_RENT_LAMPORTS
        if fee < SOL_BASE_FEE_LAMPORTS + rent:
            rent = 0  # reserved before the ledger included the rent: built as it was then
        price = priority_price(fee - rent)
        bh = blockhash if isinstance(blockhash, Hash) else _blockhash(blockhash)

        ixs: list[Instruction] = []
        if price:
            ixs += [set_compute_unit_limit(SOL_COMPUTE_UNITS), set_compute_unit_price(price)]
        if asset == NATIVE_ASSET:
            ixs.append(
                transfer(TransferParams(from_pubkey=payer, to_pubkey=recipient, lamports=amount))
            )
        else:
            entry = (tokens or {}).get(asset)
            if entry is None:
                raise TemplateError(f"unknown token {asset!r} (not in the token registry)")
            mint_s, decimals = entry
            if not 0 <= decimals <= 255:
                raise TemplateError(f"{asset}: decimals {decimals} out of range")
            mint = _pubkey(f"{asset} mint", mint_s)
            source = get_associated_token_address(payer, mint, TOKEN_PROGRAM_ID)
            dest = get_associated_token_address(recipient, mint, TOKEN_PROGRAM_ID)
            ixs.append(create_ata_idempotent(payer, recipient, mint))
            ixs.append(transfer_checked(source, mint, dest, payer, amount, decimals))
        ixs.append(memo(note))
        message = Message.new_with_blockhash(ixs, payer, bh)
        return cls(withdraw_id, payer, asset, recipient, amount, fee, bh, message)

    def message_bytes(self) -> bytes:
        """Exactly the bytes the threshold signers sign (Ed25519 over the serialized message)."""
        return bytes(self.message)

    def verifies(self, signature: bytes) -> bool:
        """Whether `signature` is a valid group signature over this message."""
        return len(signature) == 64 and Signature.from_bytes(signature).verify(
            self.payer, self.message_bytes()
        )

    def transaction(self, signature: bytes) -> Transaction:
        """The signed transaction. Not verified here: the runtime is the judge."""
        if len(signature) != 64:
            raise ValueError("an Ed25519 signature is 64 bytes")
        return Transaction.populate(self.message, [Signature.from_bytes(signature)])

    def attach(self, signature: bytes) -> bytes:
        """The serialized signed transaction (wire format, what `sendTransaction` takes)."""
        return bytes(self.transaction(signature))


def verify_message(
    message_bytes: bytes,
    template: Mapping[str, Any] | str,
    group_public_key: bytes,
    tokens: TokenRegistry | None = None,
) -> SolanaTransfer:
    """Check that `message_bytes` is exactly the template's transaction (for some blockhash).

    A co-signer calls this before contributing a share: the coordinator chooses the blockhash,
    nothing else. Returns the rebuilt transfer; raises `TemplateError` on any difference.
    """
    try:
        blockhash = Message.from_bytes(message_bytes).recent_blockhash
    except ValueError:
        raise TemplateError("not a serialized legacy Solana message") from None
    rebuilt = SolanaTransfer.build(template, group_public_key, blockhash, tokens)
    if rebuilt.message_bytes() != message_bytes:
        raise TemplateError("the message is not the template's transaction")
    return rebuilt
