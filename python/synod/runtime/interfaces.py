"""What the withdraw worker needs from signing and from a chain. Real implementations come
with the signing sessions and the chain adapters; tests use fakes at this edge only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from synod.state.machine import Withdrawal


class SigningTimeout(Exception):
    """The signing session ended without a signature (the worker re-queues, same template)."""


class Signer(Protocol):
    def sign(self, withdrawal: Withdrawal, session_id: str) -> str:
        """Run (or resume) the threshold session for the withdrawal's recorded template.

        Returns a reference to the signature; raises `SigningTimeout`. Must be safe to
        call again with the same session id after a crash.
        """
        ...


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
