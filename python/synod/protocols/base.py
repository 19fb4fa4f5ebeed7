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


class Session:
    """Base class: a session id, its participants, an event queue and a round buffer.

    Subclasses implement `_on_message`; messages for a round the session has not
    reached yet are kept and replayed when `_advance_round` gets there.
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

    # -- caller side -------------------------------------------------------
    def start(self, now: float) -> list[Send]:
        return []

    def receive(self, msg: Incoming, now: float) -> list[Send]:
        if self.done or self._foreign(msg):
            return []
        if msg.round > self.round and self._buffers(msg):
            self._early.append(msg)
            return []
        return self._on_message(msg, now)

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
        ready = [m for m in self._early if m.round <= new_round]
        self._early = [m for m in self._early if m.round > new_round]
        out: list[Send] = []
        for m in ready:
            if not self.done:
                out += self._on_message(m, now)
        return out

    def _emit(self, name: str, **data: Any) -> None:
        self._events.append(Event(name, data))

    def _broadcast(self, kind: str, payload: bytes, rnd: int | None = None) -> Send:
        return Send(BROADCAST, kind, self.round if rnd is None else rnd, payload)
