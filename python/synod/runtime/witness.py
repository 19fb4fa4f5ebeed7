"""Witnessing egress: what a member's own chain node shows of a payment.

The ledger applies a withdrawal's `Confirm` only when a quorum of members submitted the very
same one (withdraw id, txid, height of inclusion, attempt): one member cannot mark an unpaid
withdrawal paid. Each member derives it from its own chain node, through `confirmation`, which
the withdraw worker uses too; `EgressWitness` is that check alone, for a member whose runtime
does not drive the withdrawals itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from synod.runtime.consensus import WriteBack
from synod.runtime.interfaces import ChainAdapter, ChainStatus
from synod.state import errors as E
from synod.state.machine import BROADCAST, FAILED, Ledger, Withdrawal
from synod.state.transactions import Confirm

log = logging.getLogger("synod.runtime.witness")


def confirmation(w: Withdrawal, status: ChainStatus, depth: int) -> Confirm | None:
    """The `Confirm` this member's chain node backs for a broadcast (or reported failed)
    withdrawal: its transaction (or, in EOA mode, an earlier one of it) at least `depth`
    blocks deep; None while it is not."""
    txid = status.txid or w.txid or ""
    if not txid or status.confirmations < depth:
        return None
    return Confirm(w.withdraw_id, txid, status.height, attempt=w.attempt)


class EgressWitness:
    """Submits, as this member, the `Confirm` its own chain nodes back for every withdrawal
    its replica shows broadcast or failed; each once (a repeat is the same vote)."""

    def __init__(
        self,
        ledger: Ledger,
        consensus: WriteBack,
        adapters: Mapping[str, ChainAdapter],
        confirmations: Mapping[str, int],
    ) -> None:
        self.ledger, self.consensus = ledger, consensus
        self.adapters, self.confirmations = adapters, confirmations
        self._vouched: set[str] = set()  # tx ids of the open withdrawals' Confirms sent

    def step(self) -> int:
        """One pass; returns how many confirmations were submitted."""
        open_ws = self.ledger.withdrawals(BROADCAST) + self.ledger.withdrawals(FAILED)
        sent, live = 0, set()
        for w in open_ws:
            adapter = self.adapters.get(w.chain)
            if adapter is None:
                continue
            try:
                confirm = confirmation(w, adapter.status(w), self.confirmations.get(w.chain, 1))
                if confirm is None:
                    continue
                live.add(confirm.tx_id)
                if confirm.tx_id not in self._vouched:
                    self.consensus.submit(confirm)
                    self._vouched.add(confirm.tx_id)
                    sent += 1
            except E.Rejected as err:
                log.info("%s: confirmation refused: %s", w.withdraw_id, err)
            except Exception as err:  # a chain node or ledger node error: asked again later
                log.warning("%s: no confirmation this pass: %s", w.withdraw_id, err)
        self._vouched &= live  # bounded by the open withdrawals
        return sent
