"""The egress witness: a member reports a payment from its own chain node, once it is deep
enough, and only once per confirmation (a repeat would be the same vote)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synod.runtime.consensus import SoloConsensus
from synod.runtime.interfaces import ChainStatus
from synod.runtime.journal import Journal
from synod.runtime.witness import EgressWitness
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger, Withdrawal
from synod.state.transactions import (
    Broadcast,
    Confirm,
    DepositCredit,
    Reserve,
    Signed,
    StartSign,
    WithdrawRequest,
)


@dataclass
class Node:
    """A chain node's answer about the withdrawal's transaction (the edge of the test)."""

    chain: str = "eth"
    confirmations: int = 0

    def broadcast(self, withdrawal: Withdrawal, signature_ref: str) -> str:
        raise AssertionError("a witness never broadcasts")

    def status(self, withdrawal: Withdrawal) -> ChainStatus:
        return ChainStatus(self.confirmations, height=40 if self.confirmations else 0)


def test_a_payment_is_reported_once_it_is_deep_enough_and_once_only(tmp_path: Path) -> None:
    ledger = Ledger(SqliteDatabase(tmp_path / "replica.db"))
    consensus = SoloConsensus(ledger, Journal(tmp_path / "journal.db"))
    ledger.apply(DepositCredit("eth", "ETH", 10**18, "0xd", 1))
    w = ledger.apply(WithdrawRequest("r", "eth", "ETH", "0x" + "11" * 20, 10**17))
    wid = w.result["withdraw_id"]
    for tx in (Reserve(wid), StartSign(wid, "s"), Signed(wid, "s", "sig"), Broadcast(wid, "0xa")):
        ledger.apply(tx)
    node = Node()
    witness = EgressWitness(ledger, consensus, {"eth": node}, {"eth": 3})
    assert witness.step() == 0  # seen, not mined
    node.confirmations = 2
    assert witness.step() == 0  # not deep enough
    node.confirmations = 3
    consensus.paused = True  # the vote waits (here: in the journal) for the others
    assert witness.step() == 1
    assert witness.step() == 0  # the same vote is not sent again
    assert [tx for _, tx in consensus.journal.pending()] == [Confirm(wid, "0xa", 40)]
    consensus.paused = False
    consensus.resume()
    assert ledger.withdrawal(wid).status == "CONFIRMED"
    assert witness.step() == 0  # nothing open any more
