"""The transition worker: drives a power transition through its phases (seed 000 §6).

Like the withdraw worker it only reads the ledger and submits transactions; the ledger
decides. The key ceremonies go through a `KeyHandover` (begin/poll, so a networked
committee and the in-process simulated one plug in alike); migration transactions are
rows of the withdrawals table, which the withdraw worker signs, broadcasts and confirms
under the same rules as a withdrawal. Every action is safe to repeat after a crash: the
ceremony is restarted with the same session id, ledger transactions are idempotent, and
old shares are erased only after the new committee is ACTIVE (retiring twice is a no-op).

Before KEY_READY the new committee must sign a dummy message with its new shares, and the
signature must pass an independent verifier (libsecp256k1 through coincurve for BIP340,
libsodium through PyNaCl for Ed25519, address recovery for ECDSA).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from synod.runtime.consensus import WriteBack
from synod.state import errors as E
from synod.state.errors import InvalidProof
from synod.state.key_proofs import proof_message, verify_proof
from synod.state.machine import Ledger
from synod.state.transactions import (
    Activate,
    KeygenFailed,
    KeygenStart,
    KeyReady,
    MigrationRequest,
    MigrationsDone,
    MigrationStart,
)
from synod.state.transition import Phase, Transition

log = logging.getLogger("synod.runtime.transition")


@dataclass(frozen=True)
class HandoverPlan:
    """What the ceremony for one attempt of one transition must produce."""

    epoch: int
    attempt: int
    session_id: str
    old_epoch: int
    old_members: tuple[int, ...]  # the outgoing committee, minus members named as culprits
    new_members: tuple[int, ...]
    new_threshold: int
    modes: Mapping[str, str]  # scheme -> "reshare" | "fresh"


@dataclass(frozen=True)
class HandoverResult:
    ok: bool
    group_keys: Mapping[str, bytes] = field(default_factory=dict)  # scheme -> key (verifier form)
    culprits: tuple[int, ...] = ()
    reason: str = ""


class KeyHandover(Protocol):
    """The committee side of a transition: the in-process simulated committee
    (`synod.sim.committee`) or networked signer nodes."""

    def begin(self, plan: HandoverPlan) -> None:
        """Start (or restart, after a crash) the reshare/DKG sessions of `plan`."""
        ...

    def poll(self, plan: HandoverPlan) -> HandoverResult | None:
        """The outcome once every session ended, else None."""
        ...

    def sign_proof(self, epoch: int, scheme: str, message: bytes) -> bytes:
        """The new committee signs `message` with its new shares (a threshold signature)."""
        ...

    def retire(self, epoch: int) -> None:
        """Erase epoch `epoch`'s shares from every node that holds them (idempotent)."""
        ...


AddressFor = Callable[[str, str, bytes], dict[str, str]]
"""(chain, scheme, group key) -> {"address": ..., "script": ... (Bitcoin)}: the new custody
address of a chain whose key changes (supplied by the chain layer)."""


@dataclass(frozen=True)
class TransitionPolicy:
    frost_handover: str = "reshare"  # or "fresh"
    chains: tuple[str, ...] = ()  # the chains in use (a fresh key migrates each)
    schemes: tuple[str, ...] = ("bip340", "ed25519")


class TransitionWorker:
    def __init__(
        self,
        ledger: Ledger,
        consensus: WriteBack,
        handover: KeyHandover,
        address_for: AddressFor,
        policy: TransitionPolicy,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.ledger = ledger
        self.book = ledger.transitions
        self.consensus = consensus
        self.handover = handover
        self.address_for = address_for
        self.policy = policy
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._begun: set[str] = set()  # session ids begun by this process
        self.retired: set[int] = set()
        self.errors: list[str] = []

    def modes(self, t: Transition) -> dict[str, str]:
        if t.from_epoch == 0:
            return dict.fromkeys(self.policy.schemes, "fresh")
        return {
            s: ("fresh" if s == "ecdsa" else self.policy.frost_handover)
            for s in self.policy.schemes
        }

    def plan(self, t: Transition) -> HandoverPlan:
        old = self.book.committee(t.from_epoch) if t.from_epoch else None
        old_members = tuple(m for m in (old.members if old else ()) if m not in t.culprits)
        return HandoverPlan(
            t.epoch,
            t.attempt,
            t.session_id or session_id_for(t),
            t.from_epoch,
            old_members,
            t.members,
            t.threshold,
            self.modes(t),
        )

    def step(self) -> bool:
        """Advance the open transition by at most one phase; True if anything happened."""
        self._retire_old()
        t = self.book.open_transition()
        if t is None or self.consensus.paused:
            return False  # a transition's steps are decisions: they wait for consensus
        try:
            return self._act(t)
        except E.Rejected as err:
            log.info("transition %d (%s): %s", t.epoch, t.phase, err)
            return False

    def _act(self, t: Transition) -> bool:
        if t.phase is Phase.DETECTED:
            self.consensus.submit(KeygenStart(t.epoch, session_id_for(t), attempt=t.attempt))
            return True
        if t.phase is Phase.KEYGEN:
            return self._keygen(t)
        if t.phase is Phase.KEY_READY:
            self.consensus.submit(MigrationStart(t.epoch))
            return True
        if t.phase is Phase.MIGRATING:
            return self._migrate(t)
        if t.phase is Phase.MIGRATED:
            self.consensus.submit(Activate(t.epoch, at=self.clock_ms()))
            self._retire_old()
            return True
        return False

    def _keygen(self, t: Transition) -> bool:
        plan = self.plan(t)
        if plan.session_id not in self._begun:
            self.handover.begin(plan)  # after a crash: the same session, started again
            self._begun.add(plan.session_id)
        result = self.handover.poll(plan)
        if result is None:
            return False
        if not result.ok:
            reason = result.reason or "keygen failed"
            self.errors.append(f"epoch {t.epoch} attempt {t.attempt}: {reason}")
            self.consensus.submit(
                KeygenFailed(t.epoch, reason, tuple(result.culprits), attempt=t.attempt)
            )
            return True
        keys: dict[str, dict[str, str]] = {}
        try:
            for scheme, mode in plan.modes.items():
                group_key = result.group_keys.get(scheme)
                if group_key is None:
                    raise InvalidProof(f"{scheme}: the ceremony produced no key")
                message = proof_message(t.epoch, scheme, group_key)
                signature = self.handover.sign_proof(t.epoch, scheme, message)
                verify_proof(scheme, group_key, message, signature)
                keys[scheme] = {
                    "mode": mode,
                    "group_key": group_key.hex(),
                    "proof": signature.hex(),
                }
        except InvalidProof as err:  # checked here first: the ledger would refuse it
            self.consensus.submit(KeygenFailed(t.epoch, err.message, attempt=t.attempt))
            return True
        addresses = {}
        if t.from_epoch:
            for chain in self.policy.chains:
                scheme = chain_scheme_of(self.ledger, chain)
                if keys.get(scheme, {}).get("mode") == "fresh":
                    addresses[chain] = self.address_for(
                        chain, scheme, bytes.fromhex(keys[scheme]["group_key"])
                    )
        self.consensus.submit(
            KeyReady(
                t.epoch,
                keys,
                addresses,
                at=self.clock_ms(),
                attempt=t.attempt,
                culprits=tuple(result.culprits),
            )
        )
        return True

    def _migrate(self, t: Transition) -> bool:
        acted = False
        pending = self.book.pending_migration(t)
        for item in pending:
            chain, _, asset = item.partition(":")
            if chain == "open":
                continue  # a migration in flight: the withdraw worker drives it
            batch = self.book.next_batch(t.epoch, chain, asset)
            if batch is None:
                continue
            try:
                self.consensus.submit(MigrationRequest(t.epoch, chain, asset, batch))
                acted = True
            except (E.InsufficientFunds, E.DuplicateRequest, E.InvalidTransition):
                continue  # everything old is locked by payments in flight: later
        if not pending:
            try:
                self.consensus.submit(MigrationsDone(t.epoch))
                acted = True
            except E.InvalidTransition as err:
                log.info("epoch %d: %s", t.epoch, err)  # old sessions still finishing
        return acted

    def _retire_old(self) -> None:
        """Erase the shares of every retired committee (after the new one is ACTIVE)."""
        active = self.book.active_epoch()
        for t in self.book.transitions():
            if (
                t.phase is Phase.ACTIVE
                and t.epoch == active
                and t.from_epoch
                and t.from_epoch not in self.retired
            ):
                self.handover.retire(t.from_epoch)
                self.retired.add(t.from_epoch)


def session_id_for(t: Transition) -> str:
    """The same id on every node for one attempt of one transition."""
    return hashlib.sha256(f"synod/transition/{t.epoch}/{t.attempt}".encode()).hexdigest()[:32]


def chain_scheme_of(ledger: Ledger, chain: str) -> str:
    from synod.state.transition import chain_scheme

    return chain_scheme(chain, ledger.nonce_chains)
