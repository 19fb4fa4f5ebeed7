"""Each member's attester re-checks pending Requeue proofs against its own chain node: an honest
majority refuses a forged proof (a strike for its author) and carries a true one to quorum."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from synod.consensus.app import LedgerApp
from synod.runtime.attest import ProofAttester
from synod.runtime.interfaces import ChainStatus
from synod.state.db import SqliteDatabase
from synod.state.machine import FAILED, QUEUED, Ledger, Receipt, Withdrawal
from synod.state.transactions import Requeue, Tx
from tests.consensus.blocks import to_failed, withdraw_id
from tests.consensus.conftest import COMMITTEE, by_member


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[LedgerApp]:
    app = LedgerApp(SqliteDatabase(tmp_path / "l.db"), SqliteDatabase(tmp_path / "l.db"), COMMITTEE)
    yield app
    app.close()


@dataclass
class Mempool:
    """Submissions of one member, signed as that member, delivered by the next block."""

    member: int
    pool: list[bytes]

    def submit(self, tx: Tx) -> Receipt | None:
        self.pool.append(by_member(self.member, tx))
        return None


@dataclass
class Node:
    """A chain node's answer about a withdrawal; `down` raises like an unreachable node."""

    chain: str
    status_: ChainStatus
    down: bool = False
    asked: list[str] = field(default_factory=list)

    def status(self, w: Withdrawal) -> ChainStatus:
        self.asked.append(w.withdraw_id)
        if self.down:
            raise ConnectionError("node unreachable")
        return self.status_

    def broadcast(self, w: Withdrawal, signature_ref: str) -> str:
        raise AssertionError("attesters never broadcast")


def block(app: LedgerApp, txs: list[bytes]) -> None:
    app.finalize_block(app.info()[0] + 1, list(txs))
    app.commit()
    txs.clear()


def test_honest_members_refuse_a_forged_proof(sqlite_app: LedgerApp) -> None:
    app, pool = sqlite_app, []
    for b in to_failed("r1"):
        block(app, b)
    forged = Requeue(withdraw_id("r1"), "replaced", "forged: nonce used")
    block(app, [by_member(1, forged)])
    honest = ChainStatus(0)  # their nodes: the transaction is merely not mined yet
    down = Node("eth", honest, down=True)
    attesters = [
        ProofAttester(app.reader, 2, {"eth": Node("eth", honest)}, Mempool(2, pool)),
        ProofAttester(app.reader, 3, {"eth": down}, Mempool(3, pool)),
        ProofAttester(app.reader, 4, {"eth": Node("eth", honest)}, Mempool(4, pool)),
    ]
    assert [a.step() for a in attesters] == [{forged.tx_id: "forged"}, {}, {forged.tx_id: "forged"}]
    assert down.asked  # asked, unreachable: no vote
    block(app, pool)
    assert app.proof_status(forged.tx_id) == "forged"
    assert app.strikes() == {1: 1}
    assert Ledger(app.reader).withdrawal(withdraw_id("r1")).status == FAILED
    assert attesters[1].step() == {}  # decided: nothing left to vote on


def test_a_true_proof_reaches_quorum(sqlite_app: LedgerApp) -> None:
    app, pool = sqlite_app, []
    for b in to_failed("r1"):
        block(app, b)
    proof = Requeue(withdraw_id("r1"), "expired", "blockhash expired", nonce_spent=False)
    block(app, [by_member(1, proof)])
    seen = ChainStatus(0, unspendable_proof="blockhash expired at 1234")
    for member in (2, 3):
        ProofAttester(app.reader, member, {"eth": Node("eth", seen)}, Mempool(member, pool)).step()
    block(app, pool)
    assert app.proof_status(proof.tx_id) == "applied"
    w = Ledger(app.reader).withdrawal(withdraw_id("r1"))
    assert w.status == QUEUED and w.template_hash is None
