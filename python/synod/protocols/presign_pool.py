"""The presignature pool's channel, sans-I/O: a member proposes a presigning run.

Presignatures are made ahead of time (seed 003 §3.3) by runs of the crate's presigning
protocol among exactly t members, and consumed later by a signing attempt those t members
take part in (`synod.protocols.cggmp.CggmpSigningDriver`). Nobody tells the members when
to make them: each member leads runs for itself while it holds fewer than its target, and
tells the members it chose, over this channel, which run to start.

`PoolChannel` is one long-lived session per committee epoch (session id `channel_id`),
with the whole committee as participants. A proposal names the key, the run's session id
and its t signers; a receiver checks its shape and that the sender leads it and the
receiver is in it, then reports it as an event (`proposed`). Whether to join (is the key
known here, is the proposer within its share of the pool) is the keeper's decision
(`synod.node.presign_pool`); a member that will not join says so (`declined` at the
leader), so the leader need not wait the run out. A malformed message is a counted drop.
"""

from __future__ import annotations

import hashlib

from synod.protocols.base import Incoming, Send, Session
from synod.protocols.codec import CodecError, pack, pack_node_ids, unpack, unpack_node_ids

PROPOSE, DECLINE = "pool/propose", "pool/decline"
KINDS = frozenset({PROPOSE, DECLINE})
MAX_KEY_ID = 64
SESSION_ID_BYTES = 32


def channel_id(epoch: int) -> bytes:
    """The pool channel's session id for a committee epoch (the same on every member)."""
    return hashlib.sha256(b"synod/presign-pool/" + epoch.to_bytes(8, "big")).digest()


class PoolChannel(Session):
    def __init__(self, epoch: int, me: int, committee: tuple[int, ...]) -> None:
        super().__init__(channel_id(epoch), epoch, me, tuple(sorted(committee)))

    def propose(self, key_id: str, session_id: bytes, signers: tuple[int, ...]) -> list[Send]:
        """The messages that ask `signers` (this member among them) to start the run."""
        payload = pack(key_id.encode(), session_id, pack_node_ids(signers))
        return [Send(s, PROPOSE, 0, payload) for s in signers if s != self.me]

    def decline(self, leader: int, session_id: bytes) -> list[Send]:
        """Tell a run's leader this member will not take part (it need not wait it out)."""
        return [Send(leader, DECLINE, 0, pack(session_id))]

    def receive(self, msg: Incoming, now: float) -> list[Send]:
        if self._foreign(msg):
            return []
        if msg.kind == DECLINE:
            try:
                (session_id,) = unpack(msg.payload, "b")
            except CodecError as err:
                self._emit("dropped", reason="malformed", sender=msg.sender, detail=str(err))
                return []
            self._emit("declined", session_id=session_id, member=msg.sender)
            return []
        try:
            raw_key, session_id, raw_ids = unpack(msg.payload, "bbb")
            assert isinstance(raw_key, bytes)
            assert isinstance(session_id, bytes) and isinstance(raw_ids, bytes)
            key_id = raw_key.decode()
            if not 0 < len(key_id) <= MAX_KEY_ID:
                raise CodecError("key id length")
            if len(session_id) != SESSION_ID_BYTES:
                raise CodecError("session id length")
            signers = unpack_node_ids(raw_ids, len(self.participants))
        except (CodecError, UnicodeDecodeError) as err:
            self._emit("dropped", reason="malformed", sender=msg.sender, detail=str(err))
            return []
        if (
            signers != tuple(sorted(set(signers)))
            or not set(signers) <= set(self.participants)
            or msg.sender not in signers
            or self.me not in signers
        ):
            self._emit("dropped", reason="bad_signers", sender=msg.sender)
            return []
        self._emit(
            "proposed", key_id=key_id, session_id=session_id, signers=signers, leader=msg.sender
        )
        return []
