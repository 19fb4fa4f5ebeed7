"""The ledger application's ABCI logic, without CometBFT: CheckTx, proposals, block apply with
its single database transaction, crash recovery through Info, and the Requeue quorum."""

from __future__ import annotations

import json

from synod.consensus.app import Code, LedgerApp, state_digest
from synod.consensus.signed import Attest, SignedTx
from synod.state.machine import FAILED, QUEUED, Ledger
from synod.state.transactions import DepositCredit, Requeue, Reserve, Signed, WithdrawRequest
from tests.consensus.blocks import ETH_TO, to_failed, withdraw_id
from tests.consensus.conftest import (
    CHAIN_ID,
    IDENTITIES,
    OUTSIDER,
    AppFactory,
    by_member,
    by_operator,
    witnessed,
)

DEPOSIT = DepositCredit("eth", "ETH", 10**18, "0xd1", 7)


def run(app: LedgerApp, *blocks: list[bytes]) -> list[list[Code]]:
    codes = []
    for txs in blocks:
        height = app.info()[0] + 1
        outcomes, _ = app.finalize_block(height, txs)
        app.commit()
        codes.append([o.code for o in outcomes])
    return codes


def test_check_tx_refuses_unsigned_outsiders_and_unpermitted_kinds(new_app: AppFactory) -> None:
    app, _ = new_app()
    assert app.check_tx(by_member(1, DEPOSIT)).code == Code.OK
    outsider = SignedTx.sign(DEPOSIT, "member:9", OUTSIDER, CHAIN_ID).encode()
    assert app.check_tx(outsider).code == Code.UNAUTHORIZED
    impostor = SignedTx.sign(DEPOSIT, "member:2", IDENTITIES[1].sign_secret, CHAIN_ID).encode()
    assert app.check_tx(impostor).code == Code.UNAUTHORIZED  # member 1's key, member 2's name
    other_chain = SignedTx.sign(DEPOSIT, "member:1", IDENTITIES[1].sign_secret, "x").encode()
    assert app.check_tx(other_chain).code == Code.UNAUTHORIZED
    body = {"v": 1, "signer": "member:1", "tx": DEPOSIT.body()}
    assert app.check_tx(json.dumps(body).encode()).code == Code.UNAUTHORIZED  # no signature
    zero = json.dumps({**body, "sig": "00" * 64}).encode()
    assert app.check_tx(zero).code == Code.UNAUTHORIZED
    request = WithdrawRequest("r1", "eth", "ETH", ETH_TO, 5)
    assert app.check_tx(by_member(1, request)).code == Code.UNAUTHORIZED  # members cannot
    assert app.check_tx(by_operator(request)).code == Code.OK
    assert app.check_tx(by_operator(DEPOSIT)).code == Code.UNAUTHORIZED  # operators cannot
    assert app.check_tx(b"\xff" * 10).code == Code.MALFORMED
    assert app.check_tx(b"[" * 100_000 + b"]" * 100_000).code == Code.MALFORMED  # too deep
    brackets = Signed("w" * 32, "s", "[" * 1000 + "{" * 1000)  # in a string: only text
    assert app.check_tx(by_member(1, brackets)).code == Code.OK
    assert app.check_tx(b"{}").code == Code.UNAUTHORIZED
    assert app.info() == (0, b"")  # nothing changed
    assert not Ledger(app.reader).balances()


def test_check_tx_sees_committed_state_only(new_app: AppFactory) -> None:
    app, _ = new_app()
    raw = by_member(1, DEPOSIT)
    app.finalize_block(1, [raw])
    assert app.check_tx(raw).code == Code.OK  # the block is not committed yet
    app.commit()
    assert app.check_tx(raw).code == Code.DUPLICATE  # member 1 already vouched for it
    assert app.check_tx(by_member(2, DEPOSIT)).code == Code.OK  # another witness
    run(app, witnessed(DEPOSIT, (2, 3)))
    assert app.check_tx(by_member(4, DEPOSIT)).code == Code.DUPLICATE  # applied


def test_block_applies_in_order_and_a_refusal_undoes_only_itself(new_app: AppFactory) -> None:
    app, _ = new_app()
    w = withdraw_id("r1")
    big = by_operator(WithdrawRequest("r0", "eth", "ETH", ETH_TO, 10**19))
    codes = run(
        app,
        [
            by_member(1, Reserve(w)),  # before its request: refused
            *witnessed(DEPOSIT),  # credited at the third witness
            by_operator(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17)),
            by_member(2, Reserve(w)),
            by_member(4, DEPOSIT),  # a fourth witness, after the credit: a duplicate
        ],
        [big, by_member(1, Reserve(withdraw_id("r0")))],  # more than the ledger holds
    )
    assert codes == [
        [Code.REJECTED, Code.OK, Code.OK, Code.OK, Code.OK, Code.OK, Code.DUPLICATE],
        [Code.OK, Code.REJECTED],
    ]
    ledger = Ledger(app.reader)
    assert ledger.withdrawal(w).status == "RESERVED"
    assert ledger.withdrawal(withdraw_id("r0")).status == QUEUED
    assert ledger.balance("eth", "ETH")["deposited"] == 10**18
    assert app.info()[0] == 2


def test_crash_between_finalize_and_commit_replays_the_block(new_app: AppFactory) -> None:
    app, reopen = new_app()
    run(app, witnessed(DEPOSIT))
    height, app_hash = app.info()
    before = state_digest(app.reader)
    block = [by_operator(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17))]
    _, first = app.finalize_block(2, block)
    app.close()  # the process dies before Commit: the block's transaction never committed
    again = reopen()
    assert again.info() == (height, app_hash)
    assert state_digest(again.reader) == before
    _, replayed = again.finalize_block(2, block)  # CometBFT replays it
    again.commit()
    assert replayed == first
    assert again.info() == (2, first)
    assert again.app_hashes() == {1: app_hash.hex(), 2: first.hex()}


def test_proposals_keep_order_and_refuse_unauthorized(new_app: AppFactory) -> None:
    app, _ = new_app()
    good = [
        by_member(1, DEPOSIT),
        by_member(2, DEPOSIT),
        by_operator(WithdrawRequest("r", "eth", "ETH", ETH_TO, 1)),
    ]
    bad = SignedTx.sign(DEPOSIT, "member:9", OUTSIDER, CHAIN_ID).encode()
    assert app.prepare_proposal([good[0], bad, good[1], good[2]], 1 << 20) == good
    assert app.prepare_proposal(good, len(good[0]) + 1) == good[:1]
    assert app.process_proposal(good)
    assert not app.process_proposal([*good, bad])
    assert not app.process_proposal([good[0], good[0]])


def _proof(attempt: int = 0) -> Requeue:
    return Requeue(withdraw_id("r1"), "nonce used elsewhere", "forged: tx 0xbb spent it", attempt)


def test_forged_proof_never_releases_funds_and_strikes_its_voucher(new_app: AppFactory) -> None:
    app, _ = new_app()
    w = withdraw_id("r1")
    run(app, *to_failed("r1"))
    reserved = Ledger(app.reader).balance("eth", "ETH")["reserved"]
    requeue = _proof()
    assert run(app, [by_member(1, requeue)]) == [[Code.OK]]  # recorded, pending
    assert app.proof_status(requeue.tx_id) == "pending"
    assert app.check_tx(by_member(1, requeue)).code == Code.DUPLICATE  # no second vote
    run(app, [by_member(2, Attest(requeue.tx_id, "forged"))])
    assert app.proof_status(requeue.tx_id) == "pending"  # one refutation is not enough
    run(app, [by_member(3, Attest(requeue.tx_id, "forged"))])
    assert app.proof_status(requeue.tx_id) == "forged"
    ledger = Ledger(app.reader)
    assert ledger.withdrawal(w).status == FAILED and ledger.withdrawal(w).template_hash
    assert ledger.balance("eth", "ETH")["reserved"] == reserved
    assert app.strikes() == {1: 1}  # on the ledger, where power transitions count them
    # Decided: a late vote is refused, and the ledger still holds the reservation.
    assert run(app, [by_member(4, Attest(requeue.tx_id, "valid"))]) == [[Code.REJECTED]]
    assert app.check_tx(by_member(4, requeue)).code == Code.REJECTED
    assert Ledger(app.reader).withdrawal(w).status == FAILED


def test_proof_acts_at_quorum_of_attestations(new_app: AppFactory) -> None:
    app, _ = new_app()
    w = withdraw_id("r1")
    run(app, *to_failed("r1"))
    requeue = _proof()
    run(app, [by_member(1, requeue)], [by_member(2, requeue)])  # two vouch: 2 of quorum 3
    assert Ledger(app.reader).withdrawal(w).status == FAILED
    assert app.check_tx(by_member(1, Attest(requeue.tx_id, "valid"))).code == Code.DUPLICATE
    assert run(app, [by_member(4, Attest(requeue.tx_id, "valid"))]) == [[Code.OK]]
    ledger = Ledger(app.reader)
    assert ledger.withdrawal(w).status == QUEUED and ledger.withdrawal(w).template_hash is None
    assert ledger.balance("eth", "ETH")["reserved"] == 0  # funds released, by the quorum
    assert app.proof_status(requeue.tx_id) == "applied" and not app.strikes()


def test_requeue_without_proof_needs_no_quorum(new_app: AppFactory) -> None:
    app, _ = new_app()
    w = withdraw_id("r1")
    run(app, *to_failed("r1"))
    assert run(app, [by_member(1, Requeue(w, "retry"))]) == [[Code.OK]]
    assert Ledger(app.reader).withdrawal(w).status == QUEUED  # same template, nothing moved


def test_check_tx_refuses_a_request_whose_external_id_the_ledger_holds(
    new_app: AppFactory,
) -> None:
    """A retry of a withdrawal request through another member's API is a new transaction (its
    timestamp differs) with the same request id: CheckTx refuses it as the state machine's
    `duplicate_request`, so the API that sent it can say 409 at once (the block would refuse
    it too)."""
    app, _ = new_app()
    first = WithdrawRequest("ext-1", "eth", "ETH", ETH_TO, 10**17, 1000)
    assert run(app, [by_operator(first)]) == [[Code.OK]]
    retry = WithdrawRequest("ext-1", "eth", "ETH", ETH_TO, 10**17, 2000)
    refused = app.check_tx(by_operator(retry))
    assert refused.code == Code.REJECTED and "duplicate_request" in refused.log
    assert json.loads(refused.data) == {"rejected": "duplicate_request"}
    other = WithdrawRequest("ext-2", "eth", "ETH", ETH_TO, 10**17, 2000)
    assert app.check_tx(by_operator(other)).code == Code.OK
