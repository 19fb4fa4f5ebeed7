"""What every sans-I/O session shares: messages out, events out, early-message buffering."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synod.protocols.envelope import BROADCAST


@dataclass(frozen=True)
class Send:
    """A message a session wants sent. `to` is a node id or BROADCAST (all participants)."""

    to: int
    kind: str
    round: int
    payload: bytes
    private: bool = False  # seal the payload to the recipient


@dataclass(frozen=True)
class Incoming:
    """A message delivered to a session: authenticated sender, opened payload."""

    sender: int
    kind: str
    round: int
    payload: bytes


@dataclass(frozen=True)
class Event:
    """Something the caller should know: `name` plus details (culprits, outputs, reasons)."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)


EARLY_PER_PEER = 256  # messages a session keeps for later from one participant
EARLY_BYTES_PER_PEER = 4 << 20


class Session:
    """Base class: a session id, its participants, an event queue and a round buffer.

    Subclasses implement `_on_message`; messages for a round the session has not
    reached yet are kept (at most `EARLY_PER_PEER` messages and `EARLY_BYTES_PER_PEER`
    bytes from each participant, so at most participants × those in total) and
    replayed when `_advance_round` gets there.
    """

    def __init__(
        self, session_id: bytes, epoch: int, me: int, participants: tuple[int, ...]
    ) -> None:
        self.session_id = session_id
        self.epoch = epoch
        self.me = me
        self.participants = participants
        self.round = 0
        self.done = False
        self._events: list[Event] = []
        self._early: list[Incoming] = []
        self._early_use: dict[int, tuple[int, int]] = {}  # sender -> (messages, bytes) buffered

    # -- caller side -------------------------------------------------------
    def start(self, now: float) -> list[Send]:
        return []

    def receive(self, msg: Incoming, now: float) -> list[Send]:
        if self.done or self._foreign(msg):
            return []
        if msg.round > self.round and self._buffers(msg):
            self._keep_early(msg)
            return []
        return self._on_message(msg, now)

    def _keep_early(self, msg: Incoming) -> bool:
        """Buffer a message for later within the per-participant caps; False (and a drop
        event) when the sender's share of the buffer is full."""
        count, size = self._early_use.get(msg.sender, (0, 0))
        size += len(msg.payload)
        if count >= EARLY_PER_PEER or size > EARLY_BYTES_PER_PEER:
            self._emit("dropped", reason="early_overflow", sender=msg.sender)
            return False
        self._early.append(msg)
        self._early_use[msg.sender] = (count + 1, size)
        return True

    def _release_early(self, up_to: int) -> list[Incoming]:
        """Take the buffered messages of rounds up to `up_to` out of the buffer."""
        ready = [m for m in self._early if m.round <= up_to]
        self._early = [m for m in self._early if m.round > up_to]
        for m in ready:
            count, size = self._early_use[m.sender]
            self._early_use[m.sender] = (count - 1, size - len(m.payload))
        return ready

    def tick(self, now: float) -> list[Send]:
        return []

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # -- subclass side -----------------------------------------------------
    def _foreign(self, msg: Incoming) -> bool:
        """True (and a drop event) for a sender outside this session's participants: a node
        the router knows, but not a member of this committee, has no say here."""
        if msg.sender in self.participants:
            return False
        self._emit("dropped", reason="not_a_participant", sender=msg.sender)
        return True

    def _on_message(self, msg: Incoming, now: float) -> list[Send]:
        """Handle one message of the current round; a session that handles none drops it."""
        self._emit("dropped", reason="unexpected", sender=msg.sender, kind=msg.kind)
        return []

    def _buffers(self, msg: Incoming) -> bool:
        """Whether a message for a later round is kept for later (default: yes)."""
        return True

    def _advance_round(self, new_round: int, now: float) -> list[Send]:
        self.round = new_round
        ready = self._release_early(new_round)
        out: list[Send] = []
        for m in ready:
            if not self.done:
                out += self._on_message(m, now)
        return out

    def _emit(self, name: str, **data: Any) -> None:
        self._events.append(Event(name, data))

    def _broadcast(self, kind: str, payload: bytes, rnd: int | None = None) -> Send:
        return Send(BROADCAST, kind, self.round if rnd is None else rnd, payload)
