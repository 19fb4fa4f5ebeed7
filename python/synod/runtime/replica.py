"""The runtime on a member's replica of the replicated ledger (seed 000 §5.2, §8.1).

Each member runs its own withdraw worker over its own replica: the worker reads the
member's ledger database (which the member's ABCI application writes, block by block)
and sends its write-backs through `ReplicaConsensus`, which signs each one with the
member's key and broadcasts it to the member's CometBFT node. The same write-back from
several members has one transaction id, so it is applied once. A withdrawal's signing
session starts on every member from the same agreed `StartSign`: each worker asks its
own member's signer node (`NodeSigner` with that one control client), and they meet in
the ROAST session whose id derives from the agreed session id.

When consensus halts (no new block for `halt_after_s`), `ReplicaConsensus` is paused:
write-backs go to the member's journal, the worker plans with them as if applied, so
signing and broadcasting of already-agreed work go on; when blocks resume, the journal
is sent in order. `ReplicaRunner` is one wake-up of the member's runtime: the worker
and the proof attester (`runtime/attest.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from synod.consensus.client import CometRpc, ReplicatedConsensus, RpcError
from synod.runtime.attest import ProofAttester
from synod.runtime.consensus import JournaledConsensus
from synod.runtime.journal import Journal
from synod.runtime.worker import WithdrawWorker
from synod.state.machine import Ledger

log = logging.getLogger("synod.runtime.replica")


class ReplicaConsensus(JournaledConsensus):
    """The write path over a replica: reads are the member's ledger, writes go through its
    node (`ReplicatedConsensus`), and `observe` pauses it when the chain halts."""

    DRAIN_INLINE = False  # `ReplicaRunner.run_once` drains the journal

    def __init__(
        self,
        ledger: Ledger,
        replicated: ReplicatedConsensus,
        journal: Journal,
        halt_after_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ledger, replicated, journal)
        self.replicated = replicated
        self.halt_after_s = halt_after_s
        self.clock = clock
        self.height = 0
        self._moved_at = clock()

    @property
    def rpc(self) -> CometRpc:
        return self.replicated.rpc

    def observe(self) -> bool:
        """Ask the node for its height; returns whether a new block was finalized. No new
        block for `halt_after_s` (or no answer) pauses; a new one resumes."""
        try:
            height = self.rpc.status().height
        except RpcError:
            height = self.height
        now = self.clock()
        moved = height > self.height
        if moved:
            self.height, self._moved_at = height, now
            if self.paused:
                log.info("blocks resumed at height %d: %d write-backs journaled", height,
                         len(self.journal))  # fmt: skip
            self.paused = False
        elif now - self._moved_at > self.halt_after_s and not self.paused:
            log.warning("no block for %.1f s: consensus halted, journaling", now - self._moved_at)
            self.paused = True
        return moved

    def resume(self) -> int:
        """Drain the journal into the node's mempool, unless the chain is halted (then
        `observe` resumes once blocks move)."""
        return 0 if self.paused else super().resume()


class ReplicaRunner:
    """One member's runtime on its replica: the withdraw worker and, when given, the proof
    attester (which votes only while blocks are made: a vote is no agreed work)."""

    def __init__(
        self,
        consensus: ReplicaConsensus,
        worker: WithdrawWorker,
        attester: ProofAttester | None = None,
    ) -> None:
        self.consensus = consensus
        self.worker = worker
        self.attester = attester

    def run_once(self) -> int:
        """One wake-up (the caller's loop: on each finalized block, or while work is in
        flight): observe the chain, drain the journal if it moves, vote on pending proofs,
        one worker pass; returns the worker's actions."""
        self.consensus.observe()
        if not self.consensus.paused:
            if len(self.consensus.journal):
                self.consensus.resume()
            if self.attester is not None:
                self.attester.step()
        return self.worker.step()
