"""The write-back path to the state: applies transactions, or journals them while paused.

In the embedded default the "consensus" is the local ledger itself; a deployment puts
a replicated log behind the same `submit`. Seed 000 §5.2: while consensus is paused,
signing and broadcasting continue and their write-backs wait in the journal.
"""

from __future__ import annotations

import logging
from typing import Protocol

from synod.metrics import LEDGER_TRANSACTIONS
from synod.runtime.journal import Journal
from synod.state.audit import AuditAction, AuditLog
from synod.state.errors import Rejected
from synod.state.machine import Ledger, Receipt
from synod.state.transactions import Tx

log = logging.getLogger("synod.runtime.consensus")


class WriteBack(Protocol):
    """What the worker and the watchers write back through: `LocalConsensus`, or
    `synod.runtime.replica.ReplicaConsensus` on a member's replica. `paused`: consensus
    makes no progress, and write-backs wait in `journal` (which the worker plans with)."""

    @property
    def journal(self) -> Journal: ...

    @property
    def paused(self) -> bool: ...

    def submit(self, tx: Tx) -> Receipt | None: ...


class LocalConsensus:
    """`audit`, when given, gets one row per transaction applied, in the same database
    transaction as the ledger's change (so the trail never misses nor invents one)."""

    def __init__(self, ledger: Ledger, journal: Journal, audit: AuditLog | None = None) -> None:
        self.ledger = ledger
        self.journal = journal
        self.audit = audit
        self.paused = False

    def submit(self, tx: Tx) -> Receipt | None:
        """Apply now (may raise `Rejected`), or journal and return None while paused."""
        if self.paused or len(self.journal):
            self.journal.append(tx)  # keep order behind anything already waiting
            if not self.paused:
                self.resume()
            return None
        return self._apply(tx)

    def _apply(self, tx: Tx) -> Receipt:
        with self.ledger.db.transaction():
            receipt = self.ledger.apply(tx)
            if self.audit is not None and not receipt.duplicate:
                self.audit.append(
                    "consensus",
                    AuditAction.LEDGER_TX,
                    {
                        "kind": receipt.kind,
                        "tx_id": receipt.tx_id,
                        "seq": receipt.seq,
                        "withdraw_id": receipt.result.get("withdraw_id"),
                    },
                )
        if not receipt.duplicate:
            LEDGER_TRANSACTIONS.labels(receipt.kind).inc()
        return receipt

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> list[tuple[Tx, Receipt | Rejected]]:
        """Apply journaled transactions in order; refused ones are logged and dropped."""
        self.paused = False
        done: list[tuple[Tx, Receipt | Rejected]] = []
        for seq, tx in self.journal.pending():
            try:
                outcome: Receipt | Rejected = self._apply(tx)
            except Rejected as err:
                log.warning("journaled %s refused on resume: %s", tx.KIND, err)
                outcome = err
            self.journal.remove(seq)
            done.append((tx, outcome))
        return done
