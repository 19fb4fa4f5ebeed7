"""The Solana chain adapter over LiteSVM: prepare -> threshold sign -> broadcast -> status, with
idempotent broadcasts, one payment per message, and the blockhash-expiry unspendable proof."""

from __future__ import annotations

from dataclasses import replace

import pytest
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey

from synod.chains.solana.adapter import NoFreshBlockhash, SolanaAdapter
from synod.chains.solana.tx import TokenInfo
from synod.runtime.interfaces import ChainAdapter
from synod.state.machine import Withdrawal

from .conftest import SOL_FEE, Group, create_token, sol_template, withdrawal


def adapter(
    svm: LiteSVM,
    group: Group,
    tokens: dict[str, TokenInfo] | None = None,
    store: dict[str, str] | None = None,
) -> SolanaAdapter:
    a = SolanaAdapter(svm, group.key, tokens, confirmations=32, store=store)
    _: ChainAdapter = a  # it satisfies the runtime's protocol
    return a


def sign(a: SolanaAdapter, group: Group, w: Withdrawal, signers: tuple[int, ...] = (1, 3)) -> str:
    return group.sign(a.prepare(w).message, signers).hex()


def test_prepare_sign_broadcast_confirm(svm: LiteSVM, group: Group) -> None:
    a = adapter(svm, group)
    to = Pubkey.new_unique()
    w = withdrawal(sol_template("w-1", to, 2_000_000))
    first = a.prepare(w)
    assert a.prepare(w) == first  # same message while the blockhash is valid
    ref = group.sign(first.message).hex()
    tx = a.broadcast(w, ref)
    w = replace(w, status="BROADCAST", signature_ref=ref, txid=tx)
    st = a.status(w)
    assert (st.confirmations, st.rejected, st.unspendable_proof) == (32, False, "")
    assert st.height == svm.get_clock().slot
    assert a.broadcast(w, ref) == tx  # idempotent
    # A second threshold session over the same message gives another (valid) signature;
    # LiteSVM would execute it again, the adapter returns the first txid instead.
    again = sign(a, group, w, (2, 3))
    assert again != ref
    assert a.broadcast(w, again) == tx
    assert svm.get_balance(to) == 2_000_000


def test_expired_blockhash_gives_unspendable_proof_then_new_message(
    svm: LiteSVM, group: Group
) -> None:
    a = adapter(svm, group)
    to = Pubkey.new_unique()
    w = withdrawal(sol_template("w-2", to, 2_000_000))
    old = a.prepare(w)
    ref = group.sign(old.message).hex()
    svm.expire_blockhash()  # the signing session took too long
    tx = a.broadcast(w, ref)
    w = replace(w, status="BROADCAST", signature_ref=ref, txid=tx)
    st = a.status(w)
    assert st.rejected and "BlockhashNotFound" in st.reason
    assert st.unspendable_proof.startswith("sol blockhash-expiry")
    assert old.blockhash in st.unspendable_proof
    new = a.prepare(w)  # only now a fresh blockhash, so a new message
    assert new.blockhash != old.blockhash and new.message != old.message
    assert a.broadcast(w, ref) == tx  # the stale signature still goes to its own message
    ref2 = group.sign(new.message).hex()
    tx2 = a.broadcast(w, ref2)
    st2 = a.status(replace(w, signature_ref=ref2, txid=tx2))
    assert (st2.confirmations, st2.unspendable_proof) == (32, "")
    assert svm.get_balance(to) == 2_000_000


def test_landed_message_is_never_replaced(svm: LiteSVM, group: Group) -> None:
    a = adapter(svm, group)
    w = withdrawal(sol_template("w-3", Pubkey.new_unique(), 2_000_000))
    first = a.prepare(w)
    ref = group.sign(first.message).hex()
    tx = a.broadcast(w, ref)
    svm.expire_blockhash()
    assert a.prepare(w) == first  # paid: re-signing yields the same (already processed) message
    st = a.status(replace(w, status="BROADCAST", signature_ref=ref, txid=tx))
    assert st.confirmations == 32 and not st.unspendable_proof


def test_prepared_but_valid_is_not_unspendable(svm: LiteSVM, group: Group) -> None:
    a = adapter(svm, group)
    w = withdrawal(sol_template("w-4", Pubkey.new_unique(), 2_000_000))
    a.prepare(w)
    st = a.status(w)
    assert (st.confirmations, st.rejected, st.unspendable_proof) == (0, False, "")
    svm.expire_blockhash()
    assert a.status(w).unspendable_proof  # nothing was sent and nothing can be any more


def test_bad_signature_is_left_to_the_runtime(svm: LiteSVM, group: Group) -> None:
    a = adapter(svm, group)
    to = Pubkey.new_unique()
    w = withdrawal(sol_template("w-5", to, 2_000_000))
    sig = bytearray(group.sign(a.prepare(w).message))
    sig[5] ^= 0x10
    tx = a.broadcast(w, sig.hex())
    st = a.status(replace(w, status="BROADCAST", signature_ref=sig.hex(), txid=tx))
    assert st.rejected and "SignatureFailure" in st.reason
    assert st.unspendable_proof == ""  # the blockhash is still valid: same message, re-sign
    assert svm.get_balance(to) is None
    with pytest.raises(ValueError, match="64-byte"):
        a.broadcast(w, "ab" * 10)


def test_processed_with_error_is_dead_at_once(svm: LiteSVM, group: Group) -> None:
    token = create_token(svm, group.pubkey, supply=100, decimals=6)
    a = adapter(svm, group, tokens={"USDC": token})
    w = withdrawal(sol_template("w-6", Pubkey.new_unique(), 500, asset="USDC"))  # > balance
    ref = sign(a, group, w)
    tx = a.broadcast(w, ref)
    w = replace(w, status="BROADCAST", signature_ref=ref, txid=tx)
    st = a.status(w)
    assert st.rejected and st.reason.startswith("processed with error")
    assert "processed with error" in st.unspendable_proof  # the fee was paid; it can't rerun
    with pytest.raises(NoFreshBlockhash):
        a.prepare(w)  # the node still serves the blockhash that message used
    svm.expire_blockhash()
    assert a.prepare(w).blockhash == str(svm.latest_blockhash())


def test_record_survives_a_new_adapter(svm: LiteSVM, group: Group) -> None:
    store: dict[str, str] = {}
    w = withdrawal(sol_template("w-7", Pubkey.new_unique(), 2_000_000))
    first = adapter(svm, group, store=store).prepare(w)
    assert adapter(svm, group, store=store).prepare(w) == first
    lost = adapter(svm, group)  # no record: never claims unspendable
    svm.expire_blockhash()
    assert lost.status(w).unspendable_proof == ""


def test_token_withdrawal_through_the_adapter(svm: LiteSVM, group: Group) -> None:
    token = create_token(svm, group.pubkey, supply=10**9, decimals=9)
    a = adapter(svm, group, tokens={"WSOLX": TokenInfo(token.mint, token.decimals)})
    to = Pubkey.new_unique()
    w = withdrawal(sol_template("w-8", to, 123_456_789, asset="WSOLX"))
    before = svm.get_balance(group.pubkey)
    tx = a.broadcast(w, sign(a, group, w))
    assert a.status(replace(w, txid=tx)).confirmations == 32
    assert before - svm.get_balance(group.pubkey) >= SOL_FEE


def test_withheld_signature_found_in_the_accounts_history(svm: LiteSVM, group: Group) -> None:
    """An aggregator keeps a valid signature to itself and broadcasts it later: the message
    landed under a signature the adapter never saw. Once the blockhash expired, only the
    group account's history tells that it was paid; no unspendable proof is given."""
    a = adapter(svm, group)
    to = Pubkey.new_unique()
    w = withdrawal(sol_template("w-withheld", to, 2_000_000))
    prepared = a.prepare(w)
    withheld = group.sign(prepared.message)
    svm.send_transaction(prepared.transfer.transaction(withheld))  # sent behind our back
    svm.expire_blockhash()
    st = a.status(w)
    assert not st.unspendable_proof and not st.rejected
    assert st.confirmations == 32 and st.txid
    assert svm.get_balance(to) == 2_000_000
    assert a.prepare(w).message == prepared.message  # paid: never a new message


def test_no_account_history_no_proof(group: Group) -> None:
    plain = LiteSVM()  # a node that cannot list the account's transactions
    plain.airdrop(group.pubkey, 10**9)
    a = adapter(plain, group)
    w = withdrawal(sol_template("w-nohistory", Pubkey.new_unique(), 2_000_000))
    a.prepare(w)
    plain.expire_blockhash()
    assert a.status(w).unspendable_proof == ""  # fails safe: the funds stay reserved
