"""Facts the ledger cannot check for itself are witnessed: a deposit, a withdrawal's
confirmation, a strike, a new key and a failed ceremony apply only when a quorum of members
(2f + 1 = 3 of the four) submitted the very same transaction. One lying member moves nothing;
versions that disagree are kept apart and counted; a member cannot pile up pending facts."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from synod.consensus import app as app_module
from synod.consensus.app import Code, LedgerApp, pending_proofs
from synod.consensus.committee import Committee
from synod.consensus.metrics import ledger_registry
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.transactions import (
    Broadcast,
    Confirm,
    DepositCredit,
    KeygenFailed,
    KeygenStart,
    KeyReady,
    Reserve,
    Signed,
    SignerSetUpdate,
    StartSign,
    Strike,
    WithdrawRequest,
)
from synod.state.transition import Phase
from tests.consensus.blocks import ETH_TO, withdraw_id
from tests.consensus.conftest import (
    CHAIN_ID,
    IDENTITIES,
    AppFactory,
    by_member,
    by_operator,
    raw_public,
    witnessed,
)
from tests.consensus.test_app import run
from tests.keyproofs import proven

DEPOSIT = DepositCredit("eth", "ETH", 10**18, "0xd1", 7)
LIAR = 1


def deposited(app: LedgerApp) -> int:
    return Ledger(app.reader).balance("eth", "ETH")["deposited"]


def test_a_deposit_credited_by_one_member_alone_never_applies(new_app: AppFactory) -> None:
    app, _ = new_app()
    invented = DepositCredit("eth", "ETH", 5000 * 10**18, "0xnever-happened", 7)
    assert run(app, [by_member(LIAR, invented)]) == [[Code.OK]]  # recorded, pending
    assert deposited(app) == 0
    assert app.check_tx(by_member(LIAR, invented)).code == Code.DUPLICATE  # one vote each
    run(app, [by_member(2, invented)])  # even two members are not a quorum
    assert deposited(app) == 0
    assert app.witness_counts() == {"pending": 1, "conflicts": 0}
    assert pending_proofs(app.reader, 4) == []  # the proof attester sees only Requeues
    run(app, [by_member(3, invented)])
    assert deposited(app) == 5000 * 10**18  # three are (the test's own committee agrees)


def test_disagreeing_versions_are_kept_apart_and_counted(new_app: AppFactory) -> None:
    """The liar reports another amount for a real deposit first: the honest version applies at
    its quorum, the liar's is superseded, and the disagreement is counted, never merged."""
    app, _ = new_app()
    inflated = DepositCredit("eth", "ETH", 10**21, DEPOSIT.ref, DEPOSIT.height)
    run(app, [by_member(LIAR, inflated)], witnessed(DEPOSIT, (2, 3, 4)))
    assert deposited(app) == 10**18
    assert app.witness_counts() == {"applied": 1, "superseded": 1, "conflicts": 1}
    assert app.check_tx(by_member(2, inflated)).code == Code.REJECTED  # decided
    scraped = generate_latest(ledger_registry(app.reader)).decode()  # the replica's /metrics
    assert "synod_ledger_witness_conflicts 1.0" in scraped
    assert 'synod_ledger_witnessed{status="superseded"} 1.0' in scraped
    assert "synod_ledger_height 2.0" in scraped


def test_a_withdrawal_confirmed_by_one_member_alone_stays_unpaid(new_app: AppFactory) -> None:
    app, _ = new_app()
    w = withdraw_id("r1")
    run(
        app,
        [*witnessed(DEPOSIT), by_operator(WithdrawRequest("r1", "eth", "ETH", ETH_TO, 10**17))],
        [by_member(LIAR, Reserve(w)), by_member(LIAR, StartSign(w, "s1"))],
        [by_member(LIAR, Signed(w, "s1", "sig")), by_member(LIAR, Broadcast(w, "0xaa"))],
    )
    never_mined = Confirm(w, "0xaa", 9)
    run(app, [by_member(LIAR, never_mined)])
    ledger = Ledger(app.reader)
    assert ledger.withdrawal(w).status == "BROADCAST"
    assert ledger.balance("eth", "ETH")["withdrawn"] == 0
    run(app, witnessed(never_mined, (2, 3)))  # mined after all: the honest members see it
    assert Ledger(app.reader).withdrawal(w).status == "CONFIRMED"


def test_strikes_by_one_member_exclude_nobody(new_app: AppFactory) -> None:
    app, _ = new_app()
    blocks = [
        [by_member(LIAR, Strike(m, "invalid signature share", f"session s{k}"))]
        for m in (2, 3, 4)
        for k in range(3)
    ]
    run(app, *blocks)
    assert app.strikes() == {}
    assert app.witness_counts()["pending"] == 9


def test_a_key_reported_by_one_member_does_not_become_the_committee_key(
    new_app: AppFactory,
) -> None:
    app, _ = new_app()
    mine = {"bip340": proven("mine", 1)}  # a key it holds alone: its proof verifies
    ready = KeyReady(1, mine, {"eth": {"address": "0x" + "66" * 20}}, at=5)
    run(
        app,
        [by_operator(SignerSetUpdate((1, 2, 3), 2, "genesis"))],
        [by_member(LIAR, KeygenStart(1, "keygen"))],
        [by_member(LIAR, ready)],
    )
    assert Ledger(app.reader).transitions.transition(1).phase is Phase.KEYGEN
    run(app, witnessed(ready, (2, 3)))
    assert Ledger(app.reader).transitions.transition(1).phase is Phase.KEY_READY


def test_a_member_cannot_pile_up_pending_facts(
    new_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "MAX_PENDING_PER_MEMBER", 2)
    app, _ = new_app()
    lies = [DepositCredit("eth", "ETH", 1 + k, f"0xlie{k}", 7) for k in range(3)]
    codes = run(app, [by_member(LIAR, lie) for lie in lies])
    assert codes == [[Code.OK, Code.OK, Code.REJECTED]]
    # The cap is the liar's own: an honest proposal still counts, and its quorum applies.
    run(app, witnessed(DEPOSIT, (2, 3, 4)))
    assert deposited(app) == 10**18


def test_a_committee_of_one_is_its_own_quorum(tmp_path: Path) -> None:
    """Solo: the same rule with n = 1, where the quorum is one member."""
    solo = Committee(CHAIN_ID, {1: raw_public(IDENTITIES[1].sign_secret)})
    path = tmp_path / "solo.db"
    app = LedgerApp(SqliteDatabase(path), SqliteDatabase(path), solo)
    try:
        assert run(app, [by_member(1, DEPOSIT)]) == [[Code.OK]]
        assert deposited(app) == 10**18
    finally:
        app.close()


def test_a_failed_ceremony_reported_by_one_member_strikes_nobody(new_app: AppFactory) -> None:
    """A `keygen_failed` names culprits, who get strikes: the liar alone can neither fail the
    ceremony nor strike the honest members it names."""
    app, _ = new_app()
    lie = KeygenFailed(1, "timeout", culprits=(2, 3))
    run(
        app,
        [by_operator(SignerSetUpdate((1, 2, 3, 4), 3, "genesis"))],
        [by_member(LIAR, KeygenStart(1, "keygen"))],
        [by_member(LIAR, lie)],
    )
    assert Ledger(app.reader).transitions.transition(1).phase is Phase.KEYGEN
    assert app.strikes() == {}
