"""Withdrawal transactions built from the template, signed 2-of-3 with FROST-Ed25519, executed by
the real Solana runtime (LiteSVM): what it accepts, what it rejects, and what it charges."""

from __future__ import annotations

import pytest
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import TransactionErrorFieldless

from synod.chains.solana.address import solana_address
from synod.chains.solana.tx import (
    SolanaTransfer,
    TemplateError,
    TokenInfo,
    charged_fee,
    priority_price,
    txid,
    verify_message,
)
from synod.state.fees import SOL_BASE_FEE_LAMPORTS, SOL_TOKEN_ACCOUNT_RENT_LAMPORTS, FeeSchedule

from .conftest import SOL_FEE, Group, create_token, sol_template, token_balance

RENT_TOKEN_ACCOUNT = 2_039_280  # rent-exempt minimum for a 165-byte SPL token account


def send(svm: LiteSVM, transfer: SolanaTransfer, sig: bytes) -> TransactionMetadata:
    wire = transfer.attach(sig)
    assert Transaction.from_bytes(wire) == transfer.transaction(sig)
    result = svm.send_transaction(Transaction.from_bytes(wire))
    assert isinstance(result, TransactionMetadata), result
    assert str(result.signature()) == txid(sig)
    return result


def rejected(svm: LiteSVM, transfer: SolanaTransfer, sig: bytes) -> object:
    result = svm.send_transaction(transfer.transaction(sig))
    assert isinstance(result, FailedTransactionMetadata)
    return result.err()


def test_sol_transfer_signed_by_threshold(svm: LiteSVM, group: Group) -> None:
    to = Pubkey.new_unique()
    amount = 2_000_000
    before = svm.get_balance(group.pubkey)
    transfer = SolanaTransfer.build(
        sol_template("w-1", to, amount), group.key, svm.latest_blockhash()
    )
    assert str(transfer.payer) == solana_address(group.key)
    msg = transfer.message_bytes()
    sig = group.sign(msg)
    assert transfer.verifies(sig)
    meta = send(svm, transfer, sig)
    assert svm.get_balance(to) == amount
    assert meta.fee() == SOL_FEE == 5400  # the template's fee, to the lamport
    assert svm.get_balance(group.pubkey) == before - amount - SOL_FEE
    assert "Program log: synod:w-1" in meta.logs()  # the memo labels the withdrawal on chain


def test_spl_token_transfer_signed_by_threshold(svm: LiteSVM, group: Group) -> None:
    token = create_token(svm, group.pubkey, supply=5_000_000, decimals=6)
    tokens = {"USDC": token}
    to = Pubkey.new_unique()
    assert token_balance(svm, to, token) is None  # the recipient has no token account yet
    sol_before = svm.get_balance(group.pubkey)
    for i, amount in enumerate((1_250_000, 750_000)):  # second time the ATA exists: a no-op
        template = sol_template(f"w-t{i}", to, amount, asset="USDC")
        transfer = SolanaTransfer.build(template, group.key, svm.latest_blockhash(), tokens)
        meta = send(svm, transfer, group.sign(transfer.message_bytes(), (2, 3)))
        assert meta.fee() == SOL_FEE
    assert token_balance(svm, to, token) == 2_000_000
    assert token_balance(svm, group.pubkey, token) == 3_000_000
    # The group paid two fees and the rent of the recipient's new token account (see
    # ATA_RENT_NOTE; the ledger reserves it, checked against the runtime's rent below).
    assert svm.get_balance(group.pubkey) == sol_before - 2 * SOL_FEE - RENT_TOKEN_ACCOUNT
    assert svm.minimum_balance_for_rent_exemption(165) == SOL_TOKEN_ACCOUNT_RENT_LAMPORTS
    assert FeeSchedule().account_fee("sol", "USDC") == SOL_FEE + SOL_TOKEN_ACCOUNT_RENT_LAMPORTS


def test_wrong_decimals_in_registry_fail_on_chain(svm: LiteSVM, group: Group) -> None:
    token = create_token(svm, group.pubkey, supply=10, decimals=6)
    bad = {"USDC": TokenInfo(token.mint, 9)}
    transfer = SolanaTransfer.build(
        sol_template("w-d", Pubkey.new_unique(), 5, asset="USDC"),
        group.key,
        svm.latest_blockhash(),
        bad,
    )
    err = rejected(svm, transfer, group.sign(transfer.message_bytes()))
    assert "InstructionError" in str(err)  # TransferChecked refuses; nothing moved
    assert token_balance(svm, group.pubkey, token) == 10


def test_flipped_signature_bit_is_rejected(svm: LiteSVM, group: Group) -> None:
    to = Pubkey.new_unique()
    transfer = SolanaTransfer.build(
        sol_template("w-2", to, 1_000_000), group.key, svm.latest_blockhash()
    )
    sig = bytearray(group.sign(transfer.message_bytes()))
    for byte, bit in ((0, 0), (40, 7)):  # one bit in R, one in s
        bad = bytearray(sig)
        bad[byte] ^= 1 << bit
        assert not transfer.verifies(bytes(bad))
        assert rejected(svm, transfer, bytes(bad)) == TransactionErrorFieldless.SignatureFailure
    assert svm.get_balance(to) is None


def test_signature_over_another_message_is_rejected(svm: LiteSVM, group: Group) -> None:
    to = Pubkey.new_unique()
    bh = svm.latest_blockhash()
    small = SolanaTransfer.build(sol_template("w-3", to, 1_000_000), group.key, bh)
    large = SolanaTransfer.build(sol_template("w-3", to, 9_000_000), group.key, bh)
    sig = group.sign(small.message_bytes())
    assert rejected(svm, large, sig) == TransactionErrorFieldless.SignatureFailure
    assert svm.get_balance(to) is None


def test_same_signed_transaction_twice_is_a_duplicate(svm: LiteSVM, group: Group) -> None:
    to = Pubkey.new_unique()
    transfer = SolanaTransfer.build(
        sol_template("w-4", to, 1_000_000), group.key, svm.latest_blockhash()
    )
    sig = group.sign(transfer.message_bytes())
    send(svm, transfer, sig)
    assert rejected(svm, transfer, sig) == TransactionErrorFieldless.AlreadyProcessed
    assert svm.get_balance(to) == 1_000_000


def test_expired_blockhash_is_rejected(svm: LiteSVM, group: Group) -> None:
    to = Pubkey.new_unique()
    transfer = SolanaTransfer.build(
        sol_template("w-5", to, 1_000_000), group.key, svm.latest_blockhash()
    )
    sig = group.sign(transfer.message_bytes())
    svm.expire_blockhash()
    assert rejected(svm, transfer, sig) == TransactionErrorFieldless.BlockhashNotFound


def test_litesvm_deduplicates_by_signature_not_message(svm: LiteSVM, group: Group) -> None:
    """A LiteSVM quirk the adapter guards against: FROST signatures are randomized, so two
    sessions over one message give two signatures, and LiteSVM executes both (an Agave validator
    de-duplicates by message hash and would refuse the second)."""
    to = Pubkey.new_unique()
    transfer = SolanaTransfer.build(
        sol_template("w-6", to, 1_000_000), group.key, svm.latest_blockhash()
    )
    a, b = (
        group.sign(transfer.message_bytes(), (1, 2)),
        group.sign(transfer.message_bytes(), (2, 3)),
    )
    assert a != b
    send(svm, transfer, a)
    send(svm, transfer, b)
    assert svm.get_balance(to) == 2_000_000


def test_message_is_deterministic_and_checkable(group: Group) -> None:
    to = Pubkey.new_unique()
    bh = "4QjEBrJnATvydaCoPb7j4cneA5vSJNFsAYHQwRAjAjmQ"
    template = sol_template("w-7", to, 3)
    a = SolanaTransfer.build(template, group.key, bh)
    b = SolanaTransfer.build(dict(reversed(list(template.items()))), group.key, bh)
    assert a.message_bytes() == b.message_bytes()
    assert verify_message(a.message_bytes(), template, group.key).blockhash == a.blockhash
    with pytest.raises(TemplateError):
        verify_message(a.message_bytes(), sol_template("w-7", to, 4), group.key)
    with pytest.raises(TemplateError, match="legacy Solana message"):
        verify_message(b"\x01\x00", template, group.key)
    other = SolanaTransfer.build(sol_template("w-8", to, 3), group.key, bh)
    assert other.message_bytes() != a.message_bytes()  # the memo binds the withdrawal


def test_fee_maps_to_priority_price_never_above_template() -> None:
    assert priority_price(SOL_BASE_FEE_LAMPORTS) == 0
    assert priority_price(5400) == 2000 and charged_fee(2000) == 5400
    for fee in range(5000, 5600, 7):
        assert charged_fee(priority_price(fee)) <= fee


def test_no_compute_budget_when_fee_is_the_base_fee(svm: LiteSVM, group: Group) -> None:
    template = sol_template("w-9", Pubkey.new_unique(), 1_000_000, fee=SOL_BASE_FEE_LAMPORTS)
    transfer = SolanaTransfer.build(template, group.key, svm.latest_blockhash())
    assert len(transfer.message.instructions) == 2  # transfer + memo
    assert send(svm, transfer, group.sign(transfer.message_bytes())).fee() == 5000


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"chain": "eth"}, "not a Solana template"),
        ({"fee_asset": "ETH"}, "paid in SOL"),
        ({"amount": "0"}, "positive"),
        ({"amount": "-5"}, "decimal string"),
        ({"amount": str(2**64)}, "u64"),
        ({"fee": "4999"}, "below the base fee"),
        ({"to": "not-base58!"}, "not a Solana address"),
        ({"asset": "DOGE", "fee": str(SOL_FEE + SOL_TOKEN_ACCOUNT_RENT_LAMPORTS)}, "unknown token"),
        ({"withdraw_id": "x" * 200}, "too long"),
    ],
)
def test_bad_templates_are_refused(group: Group, change: dict[str, str], match: str) -> None:
    template = {**sol_template("w-x", Pubkey.new_unique(), 10), **change}
    with pytest.raises(TemplateError, match=match):
        SolanaTransfer.build(template, group.key, "4QjEBrJnATvydaCoPb7j4cneA5vSJNFsAYHQwRAjAjmQ")


def test_txid_is_base58_signature(group: Group) -> None:
    sig = group.sign(b"any")
    assert Signature.from_string(txid(sig)).to_bytes() == sig


def test_transfer_below_rent_minimum_fails_but_pays_fee(svm: LiteSVM, group: Group) -> None:
    to = Pubkey.new_unique()
    before = svm.get_balance(group.pubkey)
    transfer = SolanaTransfer.build(
        sol_template("w-r", to, 1000), group.key, svm.latest_blockhash()
    )
    err = rejected(svm, transfer, group.sign(transfer.message_bytes()))
    assert "InsufficientFundsForRent" in str(err)
    assert svm.get_balance(group.pubkey) == before - SOL_FEE  # processed: the fee is charged
    assert svm.get_balance(to) is None


def test_token_template_reserved_before_the_rent_was_included(svm: LiteSVM, group: Group) -> None:
    """A token template whose fee predates the rent reservation is still payable, and builds
    the same message as one whose fee holds the rent: the rent never goes to priority."""
    token = create_token(svm, group.pubkey, supply=10, decimals=6)
    to, bh = Pubkey.new_unique(), svm.latest_blockhash()
    old = SolanaTransfer.build(
        sol_template("w-o", to, 5, "USDC", fee=SOL_FEE), group.key, bh, {"USDC": token}
    )
    new = SolanaTransfer.build(sol_template("w-o", to, 5, "USDC"), group.key, bh, {"USDC": token})
    assert old.message == new.message
