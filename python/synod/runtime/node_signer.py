"""`NodeSigner`: the withdraw worker's `Signer` over a committee of node processes.

`begin` asks every member's control service to start the signing session for each
message of the withdrawal (one per Bitcoin input), naming the ledger record; each
member checks the message against the withdrawal's recorded template in its own
view of the ledger before it produces any nonce or share (`RecordedTemplates` is
that check for a node that reads the ledger). `poll` asks the members how each
session stands and returns the signatures once every one is done — each verified
here against the group key, so a lying member cannot hand back a bad signature —
or raises `SigningTimeout` once the members report the session failed or it ran
past its deadline. Nothing blocks: several withdrawals sign at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from synod import metrics
from synod.crypto import ecdsa, frost
from synod.crypto.errors import CryptoError
from synod.node.control import ControlError
from synod.node.results import SessionResult, SessionStatus
from synod.node.templates import SignContext, signing_session_id
from synod.runtime.interfaces import SigningTimeout
from synod.state import errors as E
from synod.state.machine import SIGNING, Ledger, Withdrawal

log = logging.getLogger("synod.runtime.node_signer")

MessagesFor = Callable[[Withdrawal], "bytes | list[bytes]"]
"""One message, or one per input (a Bitcoin spend signs each input's sighash)."""


class ControlApi(Protocol):
    """What the signer needs of a member's control client (`synod.node.control.ControlClient`)."""

    def start_sign(
        self,
        key_id: str,
        session_id: bytes,
        scheme: str,
        message: bytes,
        context: SignContext | None = None,
        rotate_timeout: float = 0.0,
        timeout: float = 0.0,
    ) -> None: ...

    def get_result(self, session_id: bytes) -> SessionResult: ...


def _messages(messages_for: MessagesFor, w: Withdrawal) -> list[bytes]:
    out = messages_for(w)
    return [out] if isinstance(out, bytes) else list(out)


class RecordedTemplates:
    """A node's template check against its own view of the ledger: the withdrawal is being
    signed in exactly that session, and the message is the one its recorded template
    gives for that input."""

    def __init__(self, ledger: Ledger, messages_for: Mapping[str, MessagesFor]) -> None:
        self.ledger = ledger
        self.messages_for = messages_for

    def __call__(self, context: SignContext, message: bytes) -> bool:
        try:
            w = self.ledger.withdrawal(context.withdraw_id)
        except E.UnknownWithdrawal:
            return False
        if w.status != SIGNING or w.session_id != context.ledger_session:
            return False
        derive = self.messages_for.get(w.chain)
        if derive is None:
            return False
        try:
            expected = _messages(derive, w)
        except Exception:  # a record this node cannot derive a message from
            log.warning("cannot derive the signing message of %s", w.withdraw_id, exc_info=True)
            return False
        return context.input_index < len(expected) and expected[context.input_index] == message


@dataclass
class _Signing:
    messages: list[bytes]
    session_ids: list[bytes]
    started: float
    deadline: float
    signatures: dict[int, bytes] = field(default_factory=dict)
    results: dict[int, list[SessionResult]] = field(default_factory=dict)


class NodeSigner:
    """ROAST (FROST, `scheme` bip340 / ed25519) or CGGMP (`ecdsa`) signing by the members
    behind `clients`, for key `key_id` whose group key is `public_key` (BIP340: the
    x-only key the chain sees, after the Taproot tweak)."""

    def __init__(
        self,
        clients: Mapping[int, ControlApi],
        key_id: str,
        scheme: str,
        public_key: bytes,
        messages_for: MessagesFor,
        rotate_timeout: float = 5.0,
        timeout: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if scheme not in ("bip340", "ed25519", "ecdsa"):
            raise ValueError(f"unknown scheme {scheme!r}")
        self.clients = clients
        self.key_id = key_id
        self.scheme = scheme
        self.public_key = public_key
        self.messages_for = messages_for
        self.rotate_timeout = rotate_timeout
        self.timeout = timeout
        self.clock = clock
        self._active: dict[str, _Signing] = {}
        self.errors: dict[int, str] = {}  # member -> its last control error

    # -- begin -----------------------------------------------------------------------
    def begin(self, withdrawal: Withdrawal, session_id: str) -> None:
        if session_id in self._active:
            return
        messages = _messages(self.messages_for, withdrawal)
        sids = [signing_session_id(session_id, i) for i in range(len(messages))]
        reached = 0
        for member, client in sorted(self.clients.items()):
            try:
                for i, (sid, message) in enumerate(zip(sids, messages, strict=True)):
                    context = SignContext(withdrawal.withdraw_id, session_id, i)
                    client.start_sign(
                        self.key_id,
                        sid,
                        self.scheme,
                        message,
                        context,
                        self.rotate_timeout,
                        self.timeout,
                    )
                reached += 1
            except ControlError as err:  # a member down or refusing: the others go on
                self.errors[member] = str(err)
                log.info("member %d did not start %s: %s", member, session_id, err)
        if reached == 0:
            raise ControlError("UNAVAILABLE", "no committee member could be reached")
        now = self.clock()
        self._active[session_id] = _Signing(messages, sids, now, now + self.timeout)

    # -- poll ------------------------------------------------------------------------
    def poll(self, session_id: str) -> str | None:
        signing = self._active.get(session_id)
        if signing is None:
            return None
        failed_everywhere = False
        for i, sid in enumerate(signing.session_ids):
            if i in signing.signatures:
                continue
            statuses = self._ask(signing, i, sid)
            if statuses and all(s is SessionStatus.FAILED for s in statuses):
                failed_everywhere = True
        if len(signing.signatures) == len(signing.messages):
            del self._active[session_id]
            self._observe(signing)
            return ",".join(signing.signatures[i].hex() for i in range(len(signing.messages)))
        if failed_everywhere or self.clock() >= signing.deadline:
            del self._active[session_id]
            raise SigningTimeout(f"signing session {session_id} ended without a signature")
        return None

    def _ask(self, signing: _Signing, index: int, sid: bytes) -> list[SessionStatus]:
        statuses: list[SessionStatus] = []
        for member, client in sorted(self.clients.items()):
            try:
                result = client.get_result(sid)
            except ControlError as err:
                self.errors[member] = str(err)
                continue
            if result.signature is not None:
                if self._verifies(signing.messages[index], result.signature):
                    signing.signatures[index] = result.signature
                    signing.results.setdefault(index, []).append(result)
                    return [*statuses, result.status]
                log.warning("member %d reported a signature that does not verify", member)
                statuses.append(SessionStatus.FAILED)  # a lie counts as no signature
                continue
            statuses.append(result.status)
        return statuses

    def _observe(self, signing: _Signing) -> None:
        """Signing latency, sub-sessions and culprits, as the member that signed reports
        them, into the process's metrics."""
        metrics.SIGNING_SECONDS.labels(self.scheme).observe(self.clock() - signing.started)
        for results in signing.results.values():
            first = results[0]
            metrics.SUB_SESSIONS.observe(first.sub_sessions)
            for culprit in sorted(first.culprits):
                metrics.CULPRITS.labels(str(culprit)).inc()

    def _verifies(self, message: bytes, signature: bytes) -> bool:
        return verify_signature(self.scheme, self.public_key, message, signature)


def verify_signature(scheme: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` (as a member reports it) is valid for `message` under the group
    key: BIP340 against the x-only output key, Ed25519, or ECDSA (r ‖ s ‖ recovery id)."""
    try:
        if scheme == "ecdsa":
            return ecdsa.Signature.from_recoverable(signature).verify(public_key, message)
        suite = frost.Ciphersuite.SECP256K1_TR if scheme == "bip340" else frost.Ciphersuite.ED25519
        frost.verify(suite, public_key, message, signature)
        return True
    except CryptoError:
        return False
