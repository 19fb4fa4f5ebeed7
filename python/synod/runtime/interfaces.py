"""What the withdraw worker needs from signing and from a chain. Real implementations come
with the signing sessions and the chain adapters; tests use fakes at this edge only."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from synod.state.machine import Withdrawal


class SigningTimeout(Exception):
    """The signing session ended without a signature (the worker re-queues, same template)."""


class Signer(Protocol):
    """Threshold signing for the worker, begin/poll: the worker never blocks on a session,
    so several withdrawals sign at once (within the per-chain in-flight limit)."""

    def begin(self, withdrawal: Withdrawal, session_id: str) -> None:
        """Start (or resume) the threshold session for the withdrawal's recorded template.

        Idempotent per session id, and safe to call again after a crash of the caller.
        """
        ...

    def poll(self, session_id: str) -> str | None:
        """The signature reference once signed, None while the session runs; raises
        `SigningTimeout` when it ended without a signature."""
        ...


class BlockingSigner(ABC):
    """A `Signer` whose whole session runs inside `begin` (the simulated committees, which
    run in virtual time, and test fakes): subclasses implement `sign`."""

    MAX_KEPT = 1024  # outcomes begun but not yet polled

    def __init__(self) -> None:
        self._outcomes: OrderedDict[str, str | SigningTimeout] = OrderedDict()

    @abstractmethod
    def sign(self, withdrawal: Withdrawal, session_id: str) -> str:
        """Run the session to its end: the signature reference, or `SigningTimeout`."""

    def begin(self, withdrawal: Withdrawal, session_id: str) -> None:
        if session_id in self._outcomes:
            return
        try:
            outcome: str | SigningTimeout = self.sign(withdrawal, session_id)
        except SigningTimeout as err:
            outcome = err
        self._outcomes[session_id] = outcome
        while len(self._outcomes) > self.MAX_KEPT:
            self._outcomes.popitem(last=False)

    def poll(self, session_id: str) -> str | None:
        outcome = self._outcomes.pop(session_id, None)
        if isinstance(outcome, SigningTimeout):
            raise outcome
        return outcome


@runtime_checkable
class CulpritReporter(Protocol):
    """A signer that can name members proven to have misbehaved in a session (an invalid
    signature share checked against their verifying share): the worker records a strike."""

    def proven_culprits(self, withdrawal: Withdrawal, session_id: str) -> list[int]: ...


@dataclass(frozen=True)
class ChainStatus:
    confirmations: int  # 0 = seen but unconfirmed (or unknown)
    height: int = 0  # block height of inclusion, when confirmed
    rejected: bool = False
    reason: str = ""
    unspendable_proof: str = ""  # set when the template can provably never be mined
    spent_outpoints: tuple[str, ...] = ()  # Bitcoin inputs the proof shows spent elsewhere
    txid: str = ""  # set when an earlier transaction of the withdrawal executed instead
    nonce_spent: bool = False  # EOA mode: the proof shows the account nonce used, unpaid


class ChainAdapter(Protocol):
    chain: str

    def broadcast(self, withdrawal: Withdrawal, signature_ref: str) -> str:
        """Attach the signature to the template, broadcast, return the txid (idempotent)."""
        ...

    def status(self, withdrawal: Withdrawal) -> ChainStatus: ...


@runtime_checkable
class SignContextSource(Protocol):
    """An adapter whose signed bytes commit to chain data beyond the template (Solana: a
    recent blockhash). The worker puts its choice into `StartSign`, so the ledger agrees on
    it and every member's worker builds the same message from it."""

    def sign_context(self, withdrawal: Withdrawal) -> str:
        """The context to sign this template under: the recorded one when the ledger has it
        (`withdrawal.sign_context`), else a fresh choice (recorded by the adapter)."""
        ...
