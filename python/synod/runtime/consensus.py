"""The write-back path to the ledger: through the member's orderer, or into its journal.

Every write goes through an orderer (`synod.consensus.client.Consensus`) in front of the one
application, `LedgerApp`: the solo orderer (`synod.consensus.solo`, a chain of one validator
in this process, the embedded default) or the member's CometBFT validator
(`ReplicatedConsensus`, wrapped by `synod.runtime.replica.ReplicaConsensus`). Seed 000 §5.2:
while consensus is paused (halted, or the orderer unreachable), signing and broadcasting go on
and their write-backs wait, in order, in the member's durable journal, which the worker plans
with as if applied.
"""

from __future__ import annotations

import logging
from typing import Protocol

from synod.consensus.client import Consensus
from synod.consensus.solo import SoloKeys, SoloOrderer
from synod.runtime.journal import Journal
from synod.state.audit import AuditLog
from synod.state.errors import Rejected
from synod.state.machine import Ledger, Receipt
from synod.state.transactions import Tx

log = logging.getLogger("synod.runtime.consensus")


class WriteBack(Protocol):
    """What the worker, the watchers and the API write through: a `JournaledConsensus`.
    `ledger` is the member's replica (reads only); `paused`: consensus makes no progress, and
    write-backs wait in `journal`."""

    @property
    def ledger(self) -> Ledger: ...

    @property
    def journal(self) -> Journal: ...

    @property
    def paused(self) -> bool: ...

    def submit(self, tx: Tx) -> Receipt | None: ...


class JournaledConsensus:
    """`orderer` orders what this member submits; `ledger` is the replica it writes to.
    `DRAIN_INLINE`: a new write-back behind journaled ones drains the journal at once (an
    in-process orderer); a replica's drains from its runner's loop instead, so a hanging node
    never holds up the caller for every write-back."""

    DRAIN_INLINE = True

    def __init__(self, ledger: Ledger, orderer: Consensus, journal: Journal) -> None:
        self.ledger = ledger
        self.orderer = orderer
        self.journal = journal
        self.paused = False

    def submit(self, tx: Tx) -> Receipt | None:
        """The receipt once applied (solo), None once accepted for a later block or journaled,
        or the refusal (`Rejected`). Behind journaled write-backs a new one waits its turn."""
        if self.paused or len(self.journal):
            self.journal.append(tx)  # keep order behind anything already waiting
            if not self.paused and self.DRAIN_INLINE:
                self.resume()
            return None
        try:
            return self.orderer.submit(tx)
        except ConnectionError as err:  # the orderer is unreachable: keep the write-back
            log.warning("orderer unreachable, journaling %s: %s", tx.KIND, err)
            self.journal.append(tx)
            return None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> int:
        """Send the journal in order while consensus moves; returns how many left it. A refused
        write-back is logged and dropped (another member's applied it, or it no longer
        applies); an unreachable orderer stops the drain until the next call."""
        self.paused = False
        sent = 0
        for seq, tx in self.journal.pending():
            if self.paused:
                break
            try:
                self.orderer.submit(tx)
            except Rejected as err:
                log.warning("journaled %s refused: %s", tx.KIND, err)
            except ConnectionError:
                break
            self.journal.remove(seq)
            sent += 1
        return sent


class SoloConsensus(JournaledConsensus):
    """The write path on one solo-ordered ledger (`SoloOrderer` over `ledger`'s store, the
    audit trail written by the application as each block is finalized)."""

    def __init__(
        self,
        ledger: Ledger,
        journal: Journal,
        audit: AuditLog | None = None,
        keys: SoloKeys | None = None,
    ) -> None:
        self.solo = SoloOrderer.over(ledger, audit, keys)
        super().__init__(ledger, self.solo, journal)
