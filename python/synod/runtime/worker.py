"""The withdraw worker: drives each withdrawal QUEUED → … → CONFIRMED (seed 000 §5.2).

It only reads the state and submits transactions; the state machine decides.
Every action is safe to repeat after a crash: reservation and session start are
consensus transactions (idempotent), signing resumes the same session id,
broadcasting the same template gives the same transaction, and a confirmation is
written once. While consensus is paused, signing, broadcasting and watching go on
and their write-backs wait in the journal; the worker follows them through its
*effective* view (ledger state plus journaled write-backs).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from synod.config import CHAIN_NAMES, SynodConfig
from synod.runtime.consensus import WriteBack
from synod.runtime.interfaces import (
    ChainAdapter,
    CulpritReporter,
    SignContextSource,
    Signer,
    SigningTimeout,
)
from synod.runtime.witness import confirmation
from synod.state import errors as E
from synod.state.machine import (
    BROADCAST,
    CONFIRMED,
    FAILED,
    QUEUED,
    RESERVED,
    SIGNED,
    SIGNING,
    Ledger,
    Withdrawal,
)
from synod.state.transactions import (
    Broadcast,
    Confirm,
    Fail,
    Requeue,
    Reserve,
    Signed,
    StartSign,
    Strike,
    Tx,
)

log = logging.getLogger("synod.runtime.worker")
IN_FLIGHT = (RESERVED, SIGNING, SIGNED, BROADCAST)


@dataclass(frozen=True)
class WorkerPolicy:
    max_in_flight_per_chain: int = 50
    max_retry: int = 5
    backoff_s: float = 5.0
    confirmations: Mapping[str, int] = field(
        default_factory=lambda: {"btc": 6, "eth": 12, "bnb": 15, "trx": 19, "sol": 32}
    )

    @classmethod
    def from_config(cls, cfg: SynodConfig) -> WorkerPolicy:
        withdraw = cfg.withdraw
        return cls(
            max_in_flight_per_chain=withdraw.max_in_flight_per_chain,
            max_retry=withdraw.retry_policy.max_retry,
            backoff_s=withdraw.retry_policy.backoff_s,
            confirmations={c: cfg.chain(c).confirmations for c in CHAIN_NAMES},
        )


def session_id_for(w: Withdrawal) -> str:
    """Deterministic per (withdrawal, attempt, session number): every node derives the same id."""
    seed = f"{w.withdraw_id}|{w.attempt}|{w.sessions + 1}".encode()
    return hashlib.sha256(b"synod/session/" + seed).hexdigest()[:32]


class WithdrawWorker:
    def __init__(
        self,
        ledger: Ledger,
        consensus: WriteBack,
        signers: Mapping[str, Signer],
        adapters: Mapping[str, ChainAdapter],
        policy: WorkerPolicy | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.ledger = ledger
        self.consensus = consensus
        self.signers = signers
        self.adapters = adapters
        self.policy = policy or WorkerPolicy()
        self.clock = clock or time.monotonic
        self.retry_at: dict[str, float] = {}  # withdraw_id -> when to touch it again
        self.errors: dict[str, str] = {}  # withdraw_id -> the last signer/adapter error
        self.actions = 0
        self._vouched: dict[str, str] = {}  # withdraw_id -> the id of the Confirm we sent

    # -- the effective view ----------------------------------------------------
    def _effective(self) -> list[Withdrawal]:
        """Open withdrawals in FIFO order, advanced by write-backs still in the journal."""
        pending: dict[str, list[Tx]] = {}
        for _, tx in self.consensus.journal.pending():
            wid = getattr(tx, "withdraw_id", None)
            if wid:
                pending.setdefault(wid, []).append(tx)
        out = []
        for w in self.ledger.open_withdrawals():
            for tx in pending.get(w.withdraw_id, []):
                w = _advance(w, tx)
            if w.status != CONFIRMED:
                out.append(w)
        return out

    # -- one pass ----------------------------------------------------------------
    def step(self, max_actions: int | None = None) -> int:
        """One pass over the open withdrawals; returns how many actions were taken.

        `max_actions` stops early (tests use it to crash between any two actions).
        """
        taken = 0
        blocked: set[tuple[str, str]] = set()
        in_flight: dict[str, int] = {}
        open_ws = self._effective()
        live = {w.withdraw_id for w in open_ws}
        self._vouched = {k: v for k, v in self._vouched.items() if k in live}
        for w in open_ws:
            if w.status in IN_FLIGHT:
                in_flight[w.chain] = in_flight.get(w.chain, 0) + 1
        for w in open_ws:
            if max_actions is not None and taken >= max_actions:
                break
            try:
                acted = self._act(w, blocked, in_flight)
            except E.Rejected as err:
                log.info("%s: %s", w.withdraw_id, err)
                acted = False
            except AssertionError:
                raise  # the ledger found a bug in itself: never retried around
            except Exception as err:  # a signer or node error: back off this one, go on
                log.warning("%s (%s): %s", w.withdraw_id, w.status, err, exc_info=True)
                self.errors[w.withdraw_id] = f"{type(err).__name__}: {err}"
                self.retry_at[w.withdraw_id] = self.clock() + self.policy.backoff_s
                acted = False
            if acted:
                taken += 1
                self.actions += 1
        return taken

    def _submit(self, tx: Tx) -> None:
        self.consensus.submit(tx)

    def _act(self, w: Withdrawal, blocked: set[tuple[str, str]], in_flight: dict[str, int]) -> bool:
        paused = self.consensus.paused
        if w.status in (SIGNING, SIGNED, BROADCAST) and self._backing_off(w):
            return False
        if w.status == QUEUED:
            if paused or (w.chain, w.asset) in blocked:
                return False
            if (
                w.template_hash is None
                and in_flight.get(w.chain, 0) >= self.policy.max_in_flight_per_chain
            ):
                blocked.add((w.chain, w.asset))
                return False
            try:
                self._submit(Reserve(w.withdraw_id, attempt=w.attempt))
            except E.InsufficientFunds:
                # The ledger's FIFO rule: a later request that fits may go before this one.
                return False
            except E.FifoViolation:
                blocked.add((w.chain, w.asset))  # an earlier one fits: it must go first
                return False
            in_flight[w.chain] = in_flight.get(w.chain, 0) + 1
            return True
        if w.status == RESERVED:
            if paused:
                return False
            adapter = self.adapters.get(w.chain)
            context = adapter.sign_context(w) if isinstance(adapter, SignContextSource) else ""
            self._submit(
                StartSign(w.withdraw_id, session_id_for(w), attempt=w.attempt, sign_context=context)
            )
            return True
        if w.status == SIGNING:
            assert w.session_id is not None
            signer = self.signers[w.chain]
            signer.begin(w, w.session_id)  # idempotent: a running session just goes on
            try:
                ref = signer.poll(w.session_id)
            except SigningTimeout:
                self._strike(signer, w)
                self._submit(Requeue(w.withdraw_id, "signing session timed out", attempt=w.attempt))
                return True
            if ref is None:
                return False  # still signing; the pass goes on with the others
            self._strike(signer, w)
            self._submit(Signed(w.withdraw_id, w.session_id, ref, attempt=w.attempt))
            return True
        if w.status == SIGNED:
            assert w.signature_ref is not None
            txid = self.adapters[w.chain].broadcast(w, w.signature_ref)
            self._submit(Broadcast(w.withdraw_id, txid, attempt=w.attempt))
            return True
        if w.status == BROADCAST:
            status = self.adapters[w.chain].status(w)
            if status.rejected:
                self._submit(Fail(w.withdraw_id, status.reason or "rejected", attempt=w.attempt))
                self.retry_at[w.withdraw_id] = self.clock() + self.policy.backoff_s
                return True
            confirm = confirmation(w, status, self.policy.confirmations.get(w.chain, 1))
            return confirm is not None and self._vote(w, confirm)
        if w.status == FAILED:
            if self._backing_off(w):
                return False
            status = self.adapters[w.chain].status(w)
            confirm = confirmation(w, status, self.policy.confirmations.get(w.chain, 1))
            if confirm is not None:  # reported failed, mined after all (a late block, a
                return self._vote(w, confirm)  # timeout that lied): never retried over
            if w.attempt >= self.policy.max_retry:
                return False  # kept, and still watched: an operator decides
            reason = "retry after failure"
            self._submit(
                Requeue(
                    w.withdraw_id,
                    reason,
                    status.unspendable_proof,
                    attempt=w.attempt,
                    spent_outpoints=status.spent_outpoints if status.unspendable_proof else (),
                    nonce_spent=status.nonce_spent and bool(status.unspendable_proof),
                )
            )
            return True
        return False

    def _vote(self, w: Withdrawal, confirm: Confirm) -> bool:
        """Vote for the payment this member's chain node shows deep enough, once (on the
        replicated ledger a Confirm applies when a quorum of members sent the same one);
        whether it was sent now."""
        if self._vouched.get(w.withdraw_id) == confirm.tx_id:
            return False
        self._submit(confirm)
        self._vouched[w.withdraw_id] = confirm.tx_id
        return True

    def _strike(self, signer: Signer, w: Withdrawal) -> None:
        """Members proven to have sent an invalid share get a strike in the ledger (one per
        member and session: a repeat is the same transaction)."""
        if not isinstance(signer, CulpritReporter) or w.session_id is None:
            return
        for member in signer.proven_culprits(w, w.session_id):
            self._submit(Strike(member, "invalid signature share", f"session {w.session_id}"))

    def _backing_off(self, w: Withdrawal) -> bool:
        return self.clock() < self.retry_at.get(w.withdraw_id, 0.0)


def _advance(w: Withdrawal, tx: Tx) -> Withdrawal:
    """The withdrawal as it will be once a journaled write-back is applied."""
    if isinstance(tx, Signed):
        return replace(w, status=SIGNED, signature_ref=tx.signature_ref)
    if isinstance(tx, Broadcast):
        return replace(w, status=BROADCAST, txid=tx.txid)
    if isinstance(tx, Confirm):
        return replace(w, status=CONFIRMED, height=tx.height, txid=tx.txid)
    if isinstance(tx, Fail):
        return replace(w, status=FAILED, reason=tx.reason)
    if isinstance(tx, Requeue):
        return replace(w, status=QUEUED, session_id=None, attempt=w.attempt + 1)
    return w
