"""Attesting unspendability proofs on the replicated ledger (issue: no single node's word moves
money). A member's `Requeue` with a proof waits on the ledger for a quorum; every member's
attester re-checks each pending proof against its OWN chain node and votes: ``valid`` when its
node also shows the template unspendable with the same consequences (the same Bitcoin inputs
spent elsewhere, the same used-up account nonce), ``forged`` otherwise. A node it cannot reach
is no verdict: it abstains and asks again on the next step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from synod.consensus.app import Database, pending_proofs
from synod.consensus.client import Consensus
from synod.consensus.signed import FORGED, VALID, Attest
from synod.runtime.interfaces import ChainAdapter, ChainStatus
from synod.state import errors as E
from synod.state.machine import Ledger
from synod.state.transactions import Requeue

log = logging.getLogger("synod.runtime.attest")


def confirms(status: ChainStatus, requeue: Requeue) -> bool:
    """Whether this node's view of the chain backs the proof in everything that moves money."""
    return (
        bool(status.unspendable_proof)
        and sorted(status.spent_outpoints) == sorted(requeue.spent_outpoints)
        and status.nonce_spent == requeue.nonce_spent
    )


class ProofAttester:
    """`replica` is this node's copy of the ledger (read only); `consensus` submits as this
    member."""

    def __init__(
        self,
        replica: Database,
        member_id: int,
        adapters: Mapping[str, ChainAdapter],
        consensus: Consensus,
    ) -> None:
        self.replica, self.member_id = replica, member_id
        self.adapters, self.consensus = adapters, consensus
        self.ledger = Ledger(replica)

    def step(self) -> dict[str, str]:
        """Vote on every pending proof this member has not voted on; returns tx id -> verdict."""
        votes: dict[str, str] = {}
        for tx_id, requeue in pending_proofs(self.replica, self.member_id):
            try:
                w = self.ledger.withdrawal(requeue.withdraw_id)
            except E.UnknownWithdrawal:
                verdict = FORGED  # a proof about nothing the ledger holds
            else:
                adapter = self.adapters.get(w.chain)
                if adapter is None:
                    log.warning("no %s node here: cannot check proof %s", w.chain, tx_id)
                    continue
                try:
                    status = adapter.status(w)
                except (ConnectionError, OSError, TimeoutError) as err:
                    log.warning(
                        "proof %s: %s node unreachable (%s); next step", tx_id, w.chain, err
                    )
                    continue
                verdict = VALID if confirms(status, requeue) else FORGED
            try:
                self.consensus.submit(Attest(tx_id, verdict))
            except E.Rejected as err:  # decided meanwhile, or already voted
                log.info("attestation for %s not taken: %s", tx_id, err)
                continue
            votes[tx_id] = verdict
        return votes
