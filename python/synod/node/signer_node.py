"""`SignerNode`: one committee member, sans-I/O.

A node owns its identity (the envelope key), its router, its nonce store and its
own key shares, and runs every session it takes part in: ROAST signing (signer and,
on its turns, aggregator), FROST DKG for both suites, CGGMP aux info, keygen,
presigning and signing, and resharing. It is driven from outside — `on_message` for
every inbound envelope, `on_tick` periodically — and sends through a `Transport`.

Callers never block on it: `start_*` begins a session (idempotent per session id)
and `result(session_id)` reads how it stands. Sessions end on their own (signed,
aborted) or at their deadline; a finished session lingers a while so late messages
are absorbed quietly, then it is closed and its fresh nonces are discarded.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from synod.crypto import ecdsa, frost
from synod.node.keyring import KeyRing, output_key
from synod.node.results import SessionKind, SessionResult, SessionStatus
from synod.node.roast_driver import AggregatorTurns
from synod.node.sessions import SessionFactory
from synod.node.transport import Transport
from synod.protocols import cggmp, dkg, reshare
from synod.protocols.base import Event, Send, Session
from synod.protocols.envelope import Identity, PeerKeys
from synod.protocols.limits import SeenLog
from synod.protocols.nonces import NonceStore
from synod.protocols.roast import DONE, OPEN, SIGN, AggregatorSchedule, TemplateValidator
from synod.protocols.router import Outbound, Router

log = logging.getLogger("synod.node")

SIGNER_KINDS = frozenset({OPEN, SIGN, DONE})
Observer = Callable[[bytes, Event], None]


def ecdsa_members(share: ecdsa.KeyShare, committee: Sequence[int] | None = None) -> tuple[int, ...]:
    """The node ids of a CGGMP key's committee in the crate's index order: `committee`
    sorted when given, else members 1..n (the crate's index i is member i + 1)."""
    return tuple(sorted(committee)) if committee else tuple(range(1, share.n + 1))


def cggmp_eid(label: bytes, session_id: bytes) -> bytes:
    """The crate's execution id for one CGGMP run: bound to the session and the protocol."""
    return hashlib.sha256(b"synod/cggmp/" + label + b"/" + session_id).digest()


class SignerNode:
    def __init__(
        self,
        identity: Identity,
        directory: dict[int, PeerKeys],
        epoch: int,
        transport: Transport,
        nonces: NonceStore,
        keys: KeyRing | None = None,
        factory: SessionFactory | None = None,
        *,
        linger: float = 30.0,
        max_results: int = 4096,
        seen: SeenLog | None = None,
        now: float = 0.0,
    ) -> None:
        """`seen` keeps the router's replay memory across restarts (the node's session store);
        `now` is the clock at start, from which the replay window counts."""
        self.identity = identity
        self.transport = transport
        self.nonces = nonces
        self.keys = keys if keys is not None else KeyRing()
        self.factory = factory or SessionFactory()
        self.linger = linger
        self.max_results = max_results
        self.router = Router(identity, directory, epoch, seen_store=seen, now=now)
        self.router.on_event = self._on_event
        self.observers: list[Observer] = []
        self._results: OrderedDict[bytes, SessionResult] = OrderedDict()
        self._sessions: dict[bytes, Session] = {}  # the session whose output a result reports
        self._turns: dict[bytes, AggregatorTurns] = {}
        self._now = 0.0
        # this member's presignature pool, when one keeps it (`synod.node.presign_pool`)
        self.presignatures: cggmp.PresignatureSource | None = None

    @property
    def node_id(self) -> int:
        return self.identity.node_id

    @property
    def epoch(self) -> int:
        return self.router.epoch

    # -- driven from outside --------------------------------------------------------
    def on_message(self, data: bytes, now: float) -> None:
        """One inbound envelope (untrusted bytes): a drop is counted, nothing raises."""
        self._now = now
        try:
            out = self.router.receive(data, now)
        except Exception:  # a session bug must not take the node down with it
            self.router.counters["handler_error"] += 1
            log.exception("node %d: a session failed on an inbound message", self.node_id)
            return
        self._send(out, now)

    def on_tick(self, now: float) -> None:
        self._now = now
        out: list[Outbound] = []
        for sid, turns in list(self._turns.items()):
            if not self._results[sid].finished:
                out += turns.tick(self.router, now)
        out += self.router.tick(now)
        self._send(out, now)
        self._expire(now)

    # -- begin ----------------------------------------------------------------------
    def start_signing(
        self,
        key_id: str,
        session_id: bytes,
        message: bytes,
        validator: TemplateValidator,
        now: float,
        *,
        tweak: frost.TaprootTweak | None = None,
        rotate_timeout: float = 5.0,
        start: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """ROAST over FROST for `message` with key `key_id`: this node signs when asked by
        the aggregator whose turn it is, and aggregates on its own turns. `validator`
        decides, before any nonce or share, whether `message` is the recorded template."""
        if self._known(session_id):
            return
        share = self.keys.frost_share(key_id)
        schedule = AggregatorSchedule(
            session_id,
            self.epoch,
            share.committee,
            now if start is None else start,
            rotate_timeout,
        )
        me = self.node_id
        self._track(session_id, SessionKind.FROST_SIGN, key_id, now, timeout)

        self._turns[session_id] = AggregatorTurns(
            schedule,
            me,
            share.threshold,
            share.public,
            message,
            tweak,
            lambda idx: self.factory.roast_coordinator(
                schedule, idx, me, share.threshold, share.public, message, tweak
            ),
            lambda ev: self._notify(session_id, ev),
        )
        signer = self.factory.roast_signer(
            schedule, me, share.key_package, share.public, validator, self.nonces, tweak, message
        )
        self.attach(signer, SIGNER_KINDS, now)
        # the first aggregator opens its turn now rather than on the next tick
        self._send(self._turns[session_id].tick(self.router, now), now)

    def start_ecdsa_signing(
        self,
        key_id: str,
        session_id: bytes,
        digest: bytes,
        validator: TemplateValidator,
        now: float,
        *,
        committee: Sequence[int] | None = None,
        path: Sequence[int] = (),
        attempt_timeout: float = 5.0,
        start: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """CGGMP signing of a 32-byte digest, retried around stalled members; the committee
        defaults to members 1..n (the crate's indices in order)."""
        if self._known(session_id):
            return
        share = self.keys.ecdsa_share(key_id)
        members = ecdsa_members(share, committee)
        schedule = AggregatorSchedule(
            session_id, self.epoch, members, now if start is None else start, attempt_timeout
        )
        driver = self.factory.cggmp_signing(
            schedule,
            self.node_id,
            share.threshold,
            share,
            digest,
            validator,
            path,
            presignatures=self.presignatures,
            key_id=key_id,
        )
        self._track(session_id, SessionKind.ECDSA_SIGN, key_id, now, timeout, driver)
        self.attach(driver, cggmp.DRIVER_KINDS, now, cggmp.PRIVATE)

    def start_dkg(
        self,
        key_id: str,
        session_id: bytes,
        participants: Iterable[int],
        threshold: int,
        suite: frost.Ciphersuite,
        now: float,
        *,
        timeout: float = 30.0,
    ) -> None:
        """FROST DKG (BIP340 or Ed25519); on success this node's share joins its key ring."""
        if self._known(session_id):
            return
        members = tuple(sorted(set(participants)))
        session = self.factory.frost_dkg(
            session_id, self.epoch, self.node_id, members, threshold, suite, now + timeout
        )
        self._track(session_id, SessionKind.FROST_DKG, key_id, now, timeout, session)
        self.attach(session, dkg.KINDS, now, dkg.PRIVATE)

    def start_aux_info(
        self,
        session_id: bytes,
        participants: Iterable[int],
        primes: ecdsa.Primes,
        now: float,
        *,
        timeout: float = 600.0,
    ) -> None:
        """CGGMP aux info (Paillier keys and ring-Pedersen parameters); the output is in
        `result(session_id).output` for the caller's keystore."""
        members = self._member_of(participants)
        eid = cggmp_eid(b"aux", session_id)
        idx, n = members.index(self.node_id), len(members)
        self._cggmp_run(
            SessionKind.ECDSA_AUX_INFO,
            "",
            session_id,
            members,
            members,
            lambda: ecdsa.AuxInfoSession(eid, idx, n, primes),
            now,
            timeout,
        )

    def start_ecdsa_keygen(
        self,
        key_id: str,
        session_id: bytes,
        participants: Iterable[int],
        threshold: int,
        aux: ecdsa.AuxInfo,
        now: float,
        *,
        timeout: float = 120.0,
    ) -> None:
        """CGGMP keygen; joined with this node's aux info, the share joins its key ring."""
        members = self._member_of(participants)
        eid = cggmp_eid(b"keygen", session_id)
        idx, n = members.index(self.node_id), len(members)
        self._cggmp_run(
            SessionKind.ECDSA_KEYGEN,
            key_id,
            session_id,
            members,
            members,
            lambda: ecdsa.KeygenSession(eid, idx, n, threshold),
            now,
            timeout,
            aux,
        )

    def start_presign(
        self,
        key_id: str,
        session_id: bytes,
        signers: Iterable[int],
        now: float,
        *,
        committee: Sequence[int] | None = None,
        timeout: float = 60.0,
    ) -> None:
        """One CGGMP presignature among `signers` (node ids); it lands in `result().output`."""
        share = self.keys.ecdsa_share(key_id)
        members = ecdsa_members(share, committee)
        chosen = tuple(sorted(set(signers)))
        eid = cggmp_eid(b"presign", session_id)
        indices = [members.index(s) for s in chosen]
        self._cggmp_run(
            SessionKind.ECDSA_PRESIGN,
            key_id,
            session_id,
            members,
            chosen,
            lambda: ecdsa.PresignSession(eid, share, indices),
            now,
            timeout,
        )

    def start_reshare(
        self,
        key_id: str,
        session_id: bytes,
        old_signers: Iterable[int],
        new_ids: Iterable[int],
        new_threshold: int,
        old_public: frost.PublicKeyPackage,
        now: float,
        *,
        new_key_id: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Move FROST key `key_id` to a new committee (same group key). A new member's share
        is stored under `new_key_id` (default: the same id) once the new threshold
        acknowledged; an old member that leaves drops its old share then."""
        if self._known(session_id):
            return
        old = self.keys.frost_keys.get(key_id)
        session = self.factory.reshare(
            session_id,
            self.epoch,
            self.node_id,
            tuple(sorted(set(old_signers))),
            tuple(sorted(set(new_ids))),
            new_threshold,
            old_public,
            None if old is None else old.key_package,
            now + timeout,
        )
        result = self._track(session_id, SessionKind.RESHARE, key_id, now, timeout, session)
        result.output = new_key_id or key_id
        self.attach(session, reshare.KINDS, now, reshare.PRIVATE)

    def send(self, session: Session, sends: list[Send], now: float) -> None:
        """Send what a registered session wants sent outside its own start and receive."""
        self._send(self.router.send(session, sends, now), now)

    def attach(
        self, session: Session, kinds: Iterable[str], now: float, private: Iterable[str] = ()
    ) -> None:
        """Register a session with the router and send what it starts with (also the way a
        harness runs a session the `start_*` methods do not cover)."""
        self._now = now
        self._send(self.router.register(session, kinds, now, private_kinds=private), now)

    def close(self) -> None:
        """Shut down: close every session (a node process calls this on its own thread, so
        the sessions' native objects are released where they were made)."""
        for sid in list(self._results):
            self.router.close(sid)
        self._sessions.clear()
        self._turns.clear()
        for result in self._results.values():
            result.output = None

    # -- poll -----------------------------------------------------------------------
    def signing(self) -> bool:
        """Whether a signing session (FROST or ECDSA) is under way here."""
        kinds = (SessionKind.FROST_SIGN, SessionKind.ECDSA_SIGN)
        return any(r.kind in kinds and not r.finished for r in self._results.values())

    def result(self, session_id: bytes) -> SessionResult | None:
        return self._results.get(session_id)

    def results(self) -> list[SessionResult]:
        return list(self._results.values())

    def session(self, session_id: bytes) -> Session | None:
        """The session whose output a result reports (DKG, CGGMP, reshare), while it lives."""
        return self._sessions.get(session_id)

    def turns(self, session_id: bytes) -> AggregatorTurns | None:
        return self._turns.get(session_id)

    # -- inside ---------------------------------------------------------------------
    def _member_of(self, participants: Iterable[int]) -> tuple[int, ...]:
        members = tuple(sorted(set(participants)))
        if self.node_id not in members:
            raise ValueError(f"node {self.node_id} is not one of the participants")
        return members

    def _known(self, session_id: bytes) -> bool:
        """A session already begun here: starting it again is a no-op (begin is idempotent)."""
        return session_id in self._results or self.router.is_closed(session_id)

    def _track(
        self,
        session_id: bytes,
        kind: SessionKind,
        key_id: str,
        now: float,
        timeout: float | None,
        session: Session | None = None,
    ) -> SessionResult:
        deadline = math.inf if timeout is None else now + timeout
        result = SessionResult(session_id, kind, key_id, now, deadline)
        self._results[session_id] = result
        if session is not None:
            self._sessions[session_id] = session
        while len(self._results) > self.max_results:
            oldest = next(iter(self._results))
            if not self._results[oldest].finished:
                break
            self._forget(oldest)
        return result

    def _cggmp_run(
        self,
        kind: SessionKind,
        key_id: str,
        session_id: bytes,
        committee: tuple[int, ...],
        parties: tuple[int, ...],
        make: Callable[[], ecdsa.Session[Any]],
        now: float,
        timeout: float,
        aux: ecdsa.AuxInfo | None = None,
    ) -> None:
        if self._known(session_id):
            return
        if self.node_id not in parties:
            raise ValueError(f"node {self.node_id} is not a party of this run")
        run = self.factory.cggmp_run(
            session_id, self.epoch, self.node_id, committee, parties, make, now + timeout
        )
        result = self._track(session_id, kind, key_id, now, timeout, run)
        if aux is not None:
            result.output = aux  # joined with the keygen output when it arrives
        self.attach(run, cggmp.RUN_KINDS, now, cggmp.PRIVATE)

    def _on_event(self, session_id: bytes, event: Event) -> None:
        result = self._results.get(session_id)
        if result is not None and not result.finished:
            try:
                self._fold(result, event)
            except Exception as err:  # e.g. keygen output that does not join its aux info
                log.warning("node %d: %s output rejected: %s", self.node_id, result.kind, err)
                result.finish(SessionStatus.FAILED, self._now, f"output rejected: {err}")
        self._notify(session_id, event)

    def _fold(self, result: SessionResult, event: Event) -> None:
        now, name, data = self._now, event.name, event.data
        if result.kind is SessionKind.FROST_DKG and name == "key_ready":
            public: frost.PublicKeyPackage = data["public_key_package"]
            self.keys.add_frost(result.key_id, data["key_package"], public)
            result.public_key = public.verifying_key()
            result.output_key = output_key(public)
            result.finish(SessionStatus.DONE, now)
        elif result.kind is SessionKind.RESHARE:
            self._fold_reshare(result, event)
        elif name == "output":
            output = data["output"]
            if result.kind is SessionKind.ECDSA_KEYGEN:
                share = ecdsa.KeyShare.from_parts(output, result.output)
                self.keys.add_ecdsa(result.key_id, share)
                result.public_key = share.public_key
                result.output = None
            else:
                result.output = output
            result.finish(SessionStatus.DONE, now)
        else:
            result.observe(self.node_id, event, now)

    def _fold_reshare(self, result: SessionResult, event: Event) -> None:
        session = self._sessions[result.session_id]
        assert isinstance(session, reshare.ReshareSession)
        if event.name == "activated":
            assert session.key_package is not None and session.public_key_package is not None
            self.keys.add_frost(str(result.output), session.key_package, session.public_key_package)
            result.public_key = session.public_key_package.verifying_key()
            result.output_key = output_key(session.public_key_package)
        elif event.name == "retire_old_share" and not session.is_new:
            self.keys.remove_frost(result.key_id)
        elif event.name == "complaint":
            result.culprits.update(int(c) for c in event.data.get("accused", ()))
        else:
            result.observe(self.node_id, event, self._now)
        if session.done and not result.finished:
            result.finish(SessionStatus.DONE, self._now)

    def _notify(self, session_id: bytes, event: Event) -> None:
        for observer in self.observers:
            observer(session_id, event)

    def _expire(self, now: float) -> None:
        for sid, result in list(self._results.items()):
            if not result.finished and now >= result.deadline:
                result.finish(SessionStatus.FAILED, now, "timeout")
                self.nonces.discard_session(sid)
            if (
                result.finished
                and result.finished_at is not None
                and now >= result.finished_at + self.linger
                and not self.router.is_closed(sid)
            ):
                self.router.close(sid)
                self.nonces.discard_session(sid)
                self._turns.pop(sid, None)
                self._sessions.pop(sid, None)

    def _forget(self, session_id: bytes) -> None:
        self._results.pop(session_id, None)
        self._turns.pop(session_id, None)
        self._sessions.pop(session_id, None)

    def _send(self, out: list[Outbound], now: float) -> None:
        """Hand envelopes to the transport, then deliver what this node sent itself (and
        send what that produces), so that peers' envelopes never wait for this node's own
        part of a round; then let the stores finish what the takes left (erasing used
        nonces and presignatures from disk), which nothing in flight waits for."""
        while True:
            for o in out:
                self.transport.send(o.to, o.data, o.kind)
            if not self.router.local_pending:
                break
            try:
                out = self.router.deliver_local(now)
            except Exception:  # as for a peer's message: counted, the node carries on
                self.router.counters["handler_error"] += 1
                log.exception("node %d: a session failed on its own message", self.node_id)
                break
        self.nonces.settle()
        if self.presignatures is not None:
            self.presignatures.settle()
