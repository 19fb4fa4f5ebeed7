"""The solo orderer: the replicated ledger's own rules on a chain of one validator.

Every write goes through `LedgerApp` (check, a block of one, commit): the signature and the
permission are checked, a witnessed fact applies at a quorum of one, a refusal comes back as
the state machine's exception, content that breaks a handler is undone and recorded without
stopping the chain, the application writes the audit row, and a replica fed the same blocks
reaches the same app hash and state."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.consensus.app import LedgerApp, state_digest
from synod.consensus.signed import SignedTx, Unauthorized
from synod.consensus.solo import SOLO_CHAIN_ID, SOLO_OPERATOR, SoloKeys, SoloOrderer
from synod.state import errors as E
from synod.state.audit import AuditAction, AuditLog
from synod.state.machine import QUEUED, Ledger
from synod.state.transactions import Cancel, DepositCredit, Reserve, WithdrawRequest
from tests.consensus.blocks import ETH_TO, withdraw_id
from tests.state.conftest import StoreFactory

DEPOSIT = DepositCredit("eth", "ETH", 10**18, "0xd1", 7)


@pytest.fixture
def solo(new_store: StoreFactory) -> SoloOrderer:
    db = new_store()()
    return SoloOrderer.over(Ledger(db), AuditLog(db), SoloKeys.generate())


def test_a_deposit_applies_at_a_quorum_of_one_and_a_request_needs_the_operator_key(
    solo: SoloOrderer,
) -> None:
    receipt = solo.submit(DEPOSIT)
    assert receipt is not None and receipt.kind == "deposit_credit" and not receipt.duplicate
    assert solo.app.proof_status(DEPOSIT.tx_id) == "applied"  # witnessed, by the one member
    request = WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17)
    assert solo.signed(request).signer == SOLO_OPERATOR
    assert solo.submit(request) is not None
    assert solo.ledger.withdrawal(withdraw_id("r1")).status == QUEUED
    assert solo.height == 2


def test_refusals_are_the_state_machines_exceptions(solo: SoloOrderer) -> None:
    solo.submit(DEPOSIT)
    solo.submit(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17))
    with pytest.raises(E.DuplicateRequest):
        solo.submit(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 2 * 10**17))
    with pytest.raises(E.UnknownWithdrawal):
        solo.submit(Reserve("f" * 64))
    for _ in range(2):  # and the same refusal when a watcher sends it again
        with pytest.raises(E.DuplicateDeposit):
            solo.submit(DepositCredit("eth", "ETH", 5, "0xd1", 8))  # another amount, same ref
    wid = withdraw_id("r1")
    solo.submit(Reserve(wid))
    with pytest.raises(E.InvalidTransition):
        solo.submit(Cancel(wid, "too late", 0))
    height = solo.height
    again = solo.submit(Reserve(wid))  # the very same transaction: its receipt, no new block
    assert again is not None and again.duplicate and solo.height == height


def test_only_the_committees_keys_and_permitted_kinds_are_ordered(solo: SoloOrderer) -> None:
    request = WithdrawRequest("r1", "eth", "ETH", ETH_TO, 1)
    outsider = Ed25519PrivateKey.generate()
    forged = SignedTx.sign(request, SOLO_OPERATOR, outsider, SOLO_CHAIN_ID).encode()
    with pytest.raises(Unauthorized):
        solo.deliver(forged)
    by_member = SignedTx.sign(request, "member:1", solo._signers["member:1"], SOLO_CHAIN_ID)
    with pytest.raises(Unauthorized):  # user requests enter through an operator key only
        solo.deliver(by_member.encode())
    with pytest.raises(E.MalformedTransaction):
        solo.deliver(b'{"v":1}')
    assert solo.height == 0


def test_content_that_breaks_a_handler_is_undone_and_the_chain_goes_on(
    solo: SoloOrderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    solo.submit(DEPOSIT)

    def broken(tx: object) -> dict[str, object]:
        raise ZeroDivisionError("a handler bug")

    monkeypatch.setitem(solo.ledger._handlers, "withdraw_request", broken)
    with pytest.raises(E.ApplyFailed):
        solo.submit(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 1))
    monkeypatch.undo()
    assert solo.height == 2  # the failure is a block like any other, with its outcome
    assert solo.submit(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 1)) is not None


def test_the_application_writes_the_audit_row_of_each_applied_transaction(
    solo: SoloOrderer,
) -> None:
    audit = AuditLog(solo.ledger.db)
    solo.submit(DEPOSIT)
    solo.submit(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17))
    with pytest.raises(E.DuplicateRequest):
        solo.submit(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 5))
    rows = [r for r in reversed(audit.tail(10)) if r.action == AuditAction.LEDGER_TX.value]
    assert [r.as_dict()["detail"]["kind"] for r in rows] == ["deposit_credit", "withdraw_request"]
    assert audit.verify().ok


def test_a_replica_fed_the_same_blocks_reaches_the_same_app_hash(
    solo: SoloOrderer, new_store: StoreFactory
) -> None:
    blocks = [
        solo.signed(tx).encode()
        for tx in (
            DEPOSIT,
            WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17),
            Reserve(withdraw_id("nothing")),  # refused when applied: still a block
            Reserve(withdraw_id("r1")),
        )
    ]
    for raw in blocks:
        with contextlib.suppress(E.Rejected):
            solo.deliver(raw)
    db = new_store()()
    replica = LedgerApp(db, db, solo.app.committee)
    for height, raw in enumerate(blocks, start=1):
        replica.finalize_block(height, [raw])
        replica.commit()
    assert replica.info() == solo.app.info()
    assert state_digest(db) == state_digest(solo.ledger.db)
