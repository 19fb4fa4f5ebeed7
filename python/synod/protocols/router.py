"""A node's message router: envelopes in, sessions driven, envelopes out. Still no I/O.

Inbound envelopes are checked in a fixed order and every drop is counted by
reason: malformed, unknown_sender, forged, misdirected, stale_epoch,
future_epoch, stale (sent before the replay window), future_time, replay,
rate_limited, closed_session, undecryptable, early_overflow. An envelope for a
session this node has not opened yet is buffered (bounded in entries and bytes,
per peer and in total: `Limits`) and replayed when the session is registered; a
session buffers messages for rounds it has not reached. The last `Limits.closed_sessions`
closed sessions are remembered, and envelopes for them are dropped.
Outbound `Send`s become signed envelopes; private payloads are sealed to their
recipient. Messages a node sends to itself are queued and delivered by `deliver_local`,
which the node calls after handing its peers' envelopes to the transport, so that its own
part of a round (persisting a nonce, taking a presignature) never delays its peers'.

The `now` a node passes in is its wall clock (Unix seconds; the simulator's shared virtual
clock in tests): it stamps outgoing envelopes and judges incoming ones against the replay
window, so nodes' clocks must agree within `Limits.clock_skew_s`.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

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
from synod.protocols.limits import Limits, ReplayWindow, SeenLog

EVENT_BACKLOG = 4096


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


@dataclass
class _Early:
    """Envelopes for sessions not opened here yet, with their accounting."""

    by_session: dict[bytes, list[tuple[float, Envelope]]] = field(default_factory=dict)
    count: Counter[int] = field(default_factory=Counter)  # per sender
    size: Counter[int] = field(default_factory=Counter)  # bytes per sender
    total: int = 0  # bytes

    def take(self, session_id: bytes) -> list[Envelope]:
        items = self.by_session.pop(session_id, [])
        for _, env in items:
            self.count[env.sender] -= 1
            self.size[env.sender] -= len(env.payload)
            self.total -= len(env.payload)
        return [env for _, env in items]

    def expire(self, before: float) -> None:
        for sid in [s for s, items in self.by_session.items() if items[0][0] < before]:
            kept = [(at, e) for at, e in self.by_session[sid] if at >= before]
            self.take(sid)
            for at, env in kept:
                self.add(at, env)

    def add(self, at: float, env: Envelope) -> None:
        self.by_session.setdefault(env.session_id, []).append((at, env))
        self.count[env.sender] += 1
        self.size[env.sender] += len(env.payload)
        self.total += len(env.payload)


class Router:
    def __init__(
        self,
        identity: Identity,
        directory: dict[int, PeerKeys],
        epoch: int,
        limits: Limits | None = None,
        seen_store: SeenLog | None = None,
        now: float = 0.0,
    ) -> None:
        """`seen_store` keeps the replay memory across restarts (the node's session store)."""
        self.identity = identity
        self.me = identity.node_id
        self.directory = directory
        self.epoch = epoch
        self.counters: Counter[str] = Counter()
        self.cpu: dict[str, float] = defaultdict(float)  # CPU seconds in each session class
        self._sessions: dict[bytes, list[_Registered]] = {}
        # closed sessions, oldest first: their envelopes are dropped, not buffered as early
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        self.limits = limits or Limits()
        self._early = _Early()
        self._seen = ReplayWindow(self.limits, seen_store, now)
        # Without an observer the last `EVENT_BACKLOG` events are kept (peers cause events).
        self.events: deque[tuple[bytes, Event]] = deque(maxlen=EVENT_BACKLOG)
        self.on_event: Callable[[bytes, Event], None] | None = None
        self._local: deque[bytes] = deque()  # envelopes to this node, for `deliver_local`

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
        for env in self._early.take(session.session_id):
            out += self._deliver(env, now)
        return out

    def send(self, session: Session, sends: list[Send], now: float) -> list[Outbound]:
        """Turn a session's sends into envelopes outside of `start` and `receive`."""
        return self._outbound(session, sends, now)

    @property
    def local_pending(self) -> bool:
        return bool(self._local)

    def deliver_local(self, now: float) -> list[Outbound]:
        """Deliver the envelopes this node sent itself so far (through the same checks as a
        peer's); what that sends to peers is returned, what it sends to itself is queued."""
        out: list[Outbound] = []
        for _ in range(len(self._local)):
            out += self.receive(self._local.popleft(), now)
        return out

    def close(self, session_id: bytes) -> None:
        self._sessions.pop(session_id, None)
        self._early.take(session_id)
        self._closed[session_id] = None
        self._closed.move_to_end(session_id)
        while len(self._closed) > self.limits.closed_sessions:
            # forgotten: a late envelope for it is then early, under the early buffer's caps
            self._closed.popitem(last=False)

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
        refused = self._seen.check(env.digest(), env.sender, env.sent_ms, now)
        if refused is not None:
            self.counters[refused] += 1
            return []
        if env.session_id in self._closed:
            self.counters["closed_session"] += 1
            return []
        return self._deliver(env, now)

    def _buffer(self, env: Envelope, now: float) -> None:
        """Keep a message no session here handles yet (its session or role starts later),
        within the caps of `Limits`; entries older than the replay window are forgotten."""
        lim, early, size = self.limits, self._early, len(env.payload)
        if not self._early_fits(env, size):
            early.expire(now - lim.replay_window_s)
            if not self._early_fits(env, size):
                self.counters["early_overflow"] += 1
                return
        early.add(now, env)
        self.counters["buffered_early"] += 1

    def _early_fits(self, env: Envelope, size: int) -> bool:
        lim, early = self.limits, self._early
        held = early.by_session.get(env.session_id)
        if held is None and len(early.by_session) >= lim.early_sessions:
            return False
        return (
            (held is None or len(held) < lim.early_per_session)
            and early.count[env.sender] < lim.early_per_peer
            and early.size[env.sender] + size <= lim.early_bytes_per_peer
            and early.total + size <= lim.early_bytes_total
        )

    def _deliver(self, env: Envelope, now: float) -> list[Outbound]:
        out: list[Outbound] = []
        handlers = [r for r in self._sessions.get(env.session_id, []) if env.kind in r.kinds]
        if not handlers:
            self._buffer(env, now)
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
            try:
                sends = reg.session.receive(msg, now)
            except Exception as err:  # a peer's bytes must never stop the router
                # Sessions turn every error a peer can cause into a drop or a culprit; this
                # counter stays at zero unless a session has a bug (the fuzz test checks it).
                self.counters["session_error"] += 1
                reg.session._emit(
                    "dropped",
                    reason="session_error",
                    sender=env.sender,
                    kind=env.kind,
                    detail=type(err).__name__,
                )
                sends = []
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
                    env = self._envelope(session, s, t, now)
                    sealed = seal(self.directory[t], s.payload, env.header())
                    out += self._route(replace(env, payload=sealed).sign(self.identity), t, now)
            else:
                env = replace(self._envelope(session, s, s.to, now), payload=s.payload)
                signed = env.sign(self.identity)
                for t in targets:
                    out += self._route(signed, t, now)
        return out

    def _envelope(self, session: Session, s: Send, to: int, now: float) -> Envelope:
        """An unsigned envelope with this send's time and a fresh nonce (no payload yet)."""
        env = Envelope(session.session_id, s.kind, self.me, to, session.epoch, s.round, b"")
        return env.stamped(max(0, int(now * 1000)))

    def _route(self, env: Envelope, to: int, now: float) -> list[Outbound]:
        if to == self.me:
            self._local.append(env.to_bytes())
            return []
        return [Outbound(to, env.to_bytes(), env.kind)]

    def _collect(self, session: Session) -> None:
        """Hand a session's events to the observer at once, before its messages go out."""
        for ev in session.events():
            if self.on_event is not None:
                self.on_event(session.session_id, ev)
            else:
                self.events.append((session.session_id, ev))
