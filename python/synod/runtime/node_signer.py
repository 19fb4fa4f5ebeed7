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
from collections import OrderedDict, deque
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


MessageRule = Callable[[Withdrawal, int, bytes], bool]
"""(withdrawal, input index, offered message) -> whether the withdrawal's recorded template
gives exactly that message for that input."""


def derived(messages_for: MessagesFor) -> MessageRule:
    """The rule for a chain whose messages follow from the template alone: equality with the
    derived message."""

    def rule(w: Withdrawal, index: int, message: bytes) -> bool:
        expected = _messages(messages_for, w)
        return index < len(expected) and expected[index] == message

    return rule


class RecordedTemplates:
    """A node's template check against its own view of the ledger: the withdrawal is being
    signed in exactly that session, and its chain's rule says the message is the one its
    recorded template gives for that input (`rules` may be a callable returning the
    current rules, e.g. a file re-read when it changes)."""

    def __init__(
        self,
        ledger: Ledger,
        rules: Mapping[str, MessageRule] | Callable[[], Mapping[str, MessageRule]],
    ) -> None:
        self.ledger = ledger
        self.rules = rules

    @classmethod
    def derived(cls, ledger: Ledger, messages_for: Mapping[str, MessagesFor]) -> RecordedTemplates:
        return cls(ledger, {chain: derived(f) for chain, f in messages_for.items()})

    def __call__(self, context: SignContext, message: bytes) -> bool:
        try:
            w = self.ledger.withdrawal(context.withdraw_id)
        except E.UnknownWithdrawal:
            return False
        if w.status != SIGNING or w.session_id != context.ledger_session:
            return False
        rules = self.rules() if callable(self.rules) else self.rules
        rule = rules.get(w.chain)
        if rule is None:
            log.warning("no signing rule for chain %s: %s refused", w.chain, w.withdraw_id)
            return False
        try:
            return rule(w, context.input_index, message)
        except Exception:  # a record this node cannot derive a message from
            log.warning("cannot derive the signing message of %s", w.withdraw_id, exc_info=True)
            return False


@dataclass
class _Signing:
    withdraw_id: str
    messages: list[bytes]
    session_ids: list[bytes]
    started: float
    deadline: float
    signatures: dict[int, bytes] = field(default_factory=dict)
    reports: dict[int, SessionResult] = field(default_factory=dict)  # input -> the signer's


@dataclass(frozen=True)
class Signing:
    """How one withdrawal's signing ended, as the members reported it (public data)."""

    withdraw_id: str
    session_id: str
    ok: bool
    seconds: float
    sub_sessions: int  # the most any of its messages took
    culprits: tuple[int, ...]  # named by the aggregators whose signatures verified


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
        history: int = 1000,
    ) -> None:
        """`history` bounds `finished`, the outcomes of the last signings."""
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
        self.finished: deque[Signing] = deque(maxlen=history)
        # Signature references of the last sessions that ended with one: on a replica the
        # worker may ask again before its write-back is in a block, and gets the same answer.
        self._signed: OrderedDict[str, str] = OrderedDict()
        self._history = history
        self.errors: dict[int, str] = {}  # member -> its last control error

    # -- begin -----------------------------------------------------------------------
    def begin(self, withdrawal: Withdrawal, session_id: str) -> None:
        if session_id in self._active or session_id in self._signed:
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
        self._active[session_id] = _Signing(
            withdrawal.withdraw_id, messages, sids, now, now + self.timeout
        )

    # -- poll ------------------------------------------------------------------------
    def poll(self, session_id: str) -> str | None:
        if session_id in self._signed:
            return self._signed[session_id]
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
            self._finish(session_id, signing, ok=True)
            ref = ",".join(signing.signatures[i].hex() for i in range(len(signing.messages)))
            self._signed[session_id] = ref
            while len(self._signed) > self._history:
                self._signed.popitem(last=False)
            return ref
        if failed_everywhere or self.clock() >= signing.deadline:
            del self._active[session_id]
            self._finish(session_id, signing, ok=False)
            raise SigningTimeout(f"signing session {session_id} ended without a signature")
        return None

    def _ask(self, signing: _Signing, index: int, sid: bytes) -> list[SessionStatus]:
        """Every member's report of one message's session. A signature counts once it
        verifies (a member's report is untrusted); the culprits kept are those its
        aggregator names, when the aggregator is among the reports."""
        statuses: list[SessionStatus] = []
        signed: list[tuple[int, SessionResult]] = []
        for member, client in sorted(self.clients.items()):
            try:
                result = client.get_result(sid)
            except ControlError as err:
                self.errors[member] = str(err)
                continue
            if result.signature is None:
                statuses.append(result.status)
            elif self._verifies(signing.messages[index], result.signature):
                signed.append((member, result))
                statuses.append(result.status)
            else:
                log.warning("member %d reported a signature that does not verify", member)
                statuses.append(SessionStatus.FAILED)  # a lie counts as no signature
        if signed:
            own = [r for m, r in signed if r.aggregator == m]
            report = own[0] if own else signed[0][1]
            assert report.signature is not None
            signing.signatures[index] = report.signature
            signing.reports[index] = report
        return statuses

    def _finish(self, session_id: str, signing: _Signing, ok: bool) -> None:
        """Record the outcome, and on success the signing latency, sub-sessions and
        culprits in the process's metrics."""
        seconds = self.clock() - signing.started
        reports = list(signing.reports.values())
        culprits = sorted({c for r in reports for c in r.culprits})
        self.finished.append(
            Signing(
                signing.withdraw_id,
                session_id,
                ok,
                seconds,
                max((r.sub_sessions for r in reports), default=0),
                tuple(culprits),
            )
        )
        if not ok:
            return
        metrics.SIGNING_SECONDS.labels(self.scheme).observe(seconds)
        for r in reports:
            metrics.SUB_SESSIONS.observe(r.sub_sessions)
        for culprit in culprits:
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
