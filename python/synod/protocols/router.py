"""A node's message router: envelopes in, sessions driven, envelopes out. Still no I/O.

Inbound envelopes are checked in a fixed order and every drop is counted by
reason: malformed, unknown_sender, forged, misdirected, stale_epoch,
future_epoch, replay, closed_session, undecryptable. An envelope for a session
this node has not opened yet is buffered (bounded) and replayed when the
session is registered; a session buffers messages for rounds it has not reached.
Outbound `Send`s become signed envelopes; private payloads are sealed to their
recipient. Messages a node sends to itself are delivered locally.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from synod.protocols.base import Event, Incoming, Send, Session
from synod.protocols.envelope import (
    BROADCAST,
    Envelope,
    EnvelopeError,
    Identity,
    PeerKeys,
    open_sealed,
    seal,
)

MAX_EARLY_PER_SESSION = 4096
MAX_EARLY_SESSIONS = 256


@dataclass
class _Registered:
    session: Session
    kinds: frozenset[str]
    private_kinds: frozenset[str]


@dataclass
class Outbound:
    """Wire bytes for one destination node."""

    to: int
    data: bytes
    kind: str = field(default="")


class Router:
    def __init__(self, identity: Identity, directory: dict[int, PeerKeys], epoch: int) -> None:
        self.identity = identity
        self.me = identity.node_id
        self.directory = directory
        self.epoch = epoch
        self.counters: Counter[str] = Counter()
        self.cpu: dict[str, float] = defaultdict(float)  # CPU seconds in each session class
        self._sessions: dict[bytes, list[_Registered]] = {}
        self._closed: set[bytes] = set()
        self._early: dict[bytes, list[Envelope]] = {}
        self._seen: set[bytes] = set()
        self.events: list[tuple[bytes, Event]] = []
        self.on_event: Callable[[bytes, Event], None] | None = None

    # -- sessions ------------------------------------------------------------
    def register(
        self,
        session: Session,
        kinds: Iterable[str],
        now: float,
        private_kinds: Iterable[str] = (),
        start: bool = True,
    ) -> list[Outbound]:
        """Add a session, run its `start` (unless told not to) and hand it buffered messages."""
        reg = _Registered(session, frozenset(kinds), frozenset(private_kinds))
        self._sessions.setdefault(session.session_id, []).append(reg)
        sends = session.start(now) if start else []
        self._collect(session)
        out = self._outbound(session, sends, now)
        for env in self._early.pop(session.session_id, []):
            out += self._deliver(env, now)
        return out

    def send(self, session: Session, sends: list[Send], now: float) -> list[Outbound]:
        """Turn a session's sends into envelopes outside of `start` and `receive`."""
        return self._outbound(session, sends, now)

    def close(self, session_id: bytes) -> None:
        self._sessions.pop(session_id, None)
        self._early.pop(session_id, None)
        self._closed.add(session_id)

    def is_closed(self, session_id: bytes) -> bool:
        return session_id in self._closed

    def sessions(self, session_id: bytes) -> list[Session]:
        return [r.session for r in self._sessions.get(session_id, [])]

    def tick(self, now: float) -> list[Outbound]:
        out: list[Outbound] = []
        for regs in list(self._sessions.values()):
            for reg in list(regs):
                sends = reg.session.tick(now)
                self._collect(reg.session)
                out += self._outbound(reg.session, sends, now)
        return out

    # -- inbound -------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[Outbound]:
        try:
            env = Envelope.from_bytes(data)
        except EnvelopeError:
            self.counters["malformed"] += 1
            return []
        peer = self.directory.get(env.sender)
        if peer is None:
            self.counters["unknown_sender"] += 1
            return []
        if not env.verify(peer):
            self.counters["forged"] += 1
            return []
        if env.recipient not in (BROADCAST, self.me):
            self.counters["misdirected"] += 1
            return []
        if env.epoch < self.epoch:
            self.counters["stale_epoch"] += 1
            return []
        if env.epoch > self.epoch:
            self.counters["future_epoch"] += 1
            return []
        digest = env.digest()
        if digest in self._seen:
            self.counters["replay"] += 1
            return []
        self._seen.add(digest)
        if env.session_id in self._closed:
            self.counters["closed_session"] += 1
            return []
        return self._deliver(env, now)

    def _buffer(self, env: Envelope) -> None:
        """Keep a message no session here handles yet (its session or role starts later)."""
        early = self._early.setdefault(env.session_id, [])
        if len(early) >= MAX_EARLY_PER_SESSION or len(self._early) > MAX_EARLY_SESSIONS:
            self.counters["early_overflow"] += 1
            return
        early.append(env)
        self.counters["buffered_early"] += 1

    def _deliver(self, env: Envelope, now: float) -> list[Outbound]:
        out: list[Outbound] = []
        handlers = [r for r in self._sessions.get(env.session_id, []) if env.kind in r.kinds]
        if not handlers:
            self._buffer(env)
            return out
        for reg in handlers:
            payload = env.payload
            if env.kind in reg.private_kinds:
                opened = open_sealed(self.identity, payload, env.header())
                if opened is None:
                    self.counters["undecryptable"] += 1
                    continue
                payload = opened
            self.counters["delivered"] += 1
            msg = Incoming(env.sender, env.kind, env.round, payload)
            started = time.process_time()
            sends = reg.session.receive(msg, now)
            self.cpu[type(reg.session).__name__] += time.process_time() - started
            self._collect(reg.session)
            out += self._outbound(reg.session, sends, now)
        return out

    # -- outbound ------------------------------------------------------------
    def _outbound(self, session: Session, sends: list[Send], now: float) -> list[Outbound]:
        out: list[Outbound] = []
        for s in sends:
            targets = session.participants if s.to == BROADCAST else (s.to,)
            if s.private:
                for t in targets:
                    header = Envelope(
                        session.session_id, s.kind, self.me, t, session.epoch, s.round, b""
                    ).header()
                    env = self._envelope(session, s, t, seal(self.directory[t], s.payload, header))
                    out += self._route(env, t, now)
            else:
                env = self._envelope(session, s, s.to, s.payload)
                for t in targets:
                    out += self._route(env, t, now)
        return out

    def _envelope(self, session: Session, s: Send, to: int, payload: bytes) -> Envelope:
        env = Envelope(session.session_id, s.kind, self.me, to, session.epoch, s.round, payload)
        return env.sign(self.identity)

    def _route(self, env: Envelope, to: int, now: float) -> list[Outbound]:
        if to == self.me:
            return self.receive(env.to_bytes(), now)
        return [Outbound(to, env.to_bytes(), env.kind)]

    def _collect(self, session: Session) -> None:
        """Hand a session's events to the observer at once, before its messages go out."""
        for ev in session.events():
            if self.on_event is not None:
                self.on_event(session.session_id, ev)
            else:
                self.events.append((session.session_id, ev))
