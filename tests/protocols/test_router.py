"""The router drops and counts forged, replayed, misdirected, stale and malformed envelopes,
buffers early ones, and seals private payloads."""

from __future__ import annotations

from synod.protocols.base import Incoming, Send, Session
from synod.protocols.envelope import Envelope, Identity
from synod.protocols.router import Router

IDS = {i: Identity.from_seed(i, b"router") for i in (1, 2, 3)}
DIRECTORY = {i: ident.public for i, ident in IDS.items()}


class Echo(Session):
    """Records what it gets; answers 'ping' with a private 'pong' to the sender."""

    def __init__(self, me: int, sid: bytes = b"s") -> None:
        super().__init__(sid, 5, me, (1, 2, 3))
        self.got: list[Incoming] = []

    def receive(self, msg: Incoming, now: float) -> list[Send]:
        self.got.append(msg)
        if msg.kind == "ping":
            return [Send(msg.sender, "pong", 0, b"secret " + msg.payload, private=True)]
        return []


def env(
    sender: int,
    kind: str = "ping",
    epoch: int = 5,
    sid: bytes = b"s",
    to: int = 0,
    payload: bytes = b"hi",
) -> bytes:
    return Envelope(sid, kind, sender, to, epoch, 0, payload).sign(IDS[sender]).to_bytes()


def router(me: int) -> tuple[Router, Echo]:
    r = Router(IDS[me], DIRECTORY, epoch=5)
    s = Echo(me)
    r.register(s, {"ping", "pong"}, 0.0, private_kinds={"pong"})
    return r, s


def test_delivery_and_private_reply() -> None:
    r2, s2 = router(2)
    out = r2.receive(env(1), 0.0)
    assert [m.payload for m in s2.got] == [b"hi"]
    assert len(out) == 1 and out[0].to == 1
    assert b"secret" not in out[0].data  # sealed on the wire
    r1, s1 = router(1)
    r1.receive(out[0].data, 0.0)
    assert s1.got[-1].payload == b"secret hi"
    # The same bytes are useless to a third party.
    r3, s3 = router(3)
    r3.receive(out[0].data, 0.0)
    assert r3.counters["misdirected"] == 1 and not s3.got


def test_drops_are_counted_by_reason() -> None:
    r, s = router(2)
    good = env(1)
    r.receive(good, 0.0)
    r.receive(good, 0.0)  # replay
    r.receive(good[:-1] + bytes([good[-1] ^ 1]), 0.0)  # forged signature
    r.receive(env(1, epoch=4), 0.0)  # stale epoch
    r.receive(env(1, epoch=6), 0.0)  # future epoch
    r.receive(env(1, to=3, payload=b"x"), 0.0)  # misdirected
    r.receive(b"\x00garbage", 0.0)  # malformed
    unknown = Identity.from_seed(9, b"router")
    r.receive(Envelope(b"s", "ping", 9, 0, 5, 0, b"x").sign(unknown).to_bytes(), 0.0)
    assert len(s.got) == 1
    c = r.counters
    assert (c["replay"], c["forged"], c["stale_epoch"], c["future_epoch"]) == (1, 1, 1, 1)
    assert (c["misdirected"], c["malformed"], c["unknown_sender"]) == (1, 1, 1)


def test_early_messages_wait_for_their_session_and_closed_sessions_drop() -> None:
    r = Router(IDS[2], DIRECTORY, epoch=5)
    r.receive(env(1, sid=b"later", payload=b"early"), 0.0)
    assert r.counters["buffered_early"] == 1
    s = Echo(2, b"later")
    r.register(s, {"ping"}, 1.0)
    assert [m.payload for m in s.got] == [b"early"]
    r.close(b"later")
    r.receive(env(3, sid=b"later", payload=b"late"), 2.0)
    assert r.counters["closed_session"] == 1
