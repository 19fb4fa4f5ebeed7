"""FROST DKG runs in the simulator, with optional misbehaving participants.

Behaviours: ``silent`` (never sends), ``bad-share`` (sends one peer a round-2
share meant for someone else), ``equivocate`` (shows different round-1
packages to different peers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from synod.crypto import frost
from synod.protocols.base import Event, Send
from synod.protocols.dkg import R1, R2, FrostDkgSession
from synod.protocols.envelope import Identity, PeerKeys
from synod.protocols.router import Router
from synod.sim.network import LinkModel, Network

KINDS = {"dkg/r1", "dkg/echo", "dkg/r2", "dkg/ack", "dkg/abort"}


class _ByzantineDkg(FrostDkgSession):
    behaviour = ""

    def start(self, now: float) -> list[Send]:
        sends = super().start(now)
        if self.behaviour != "equivocate":
            return sends
        _, other = frost.dkg_part1(self.suite, self.me, len(self.participants), self.threshold)
        return [
            Send(p, "dkg/r1", R1, (other if i % 2 else self.r1[self.me]).to_bytes())
            for i, p in enumerate(self.others)
        ]

    def _maybe_r2(self, now: float) -> list[Send]:
        sends = super()._maybe_r2(now)
        if self.behaviour != "bad-share" or len(sends) < 2:
            return sends
        r2 = [s for s in sends if s.kind == "dkg/r2"]
        victim, donor = r2[0], r2[1]
        return [Send(victim.to, victim.kind, R2, donor.payload, private=True)] + [
            s for s in sends if s is not victim
        ]


@dataclass
class DkgNode:
    node_id: int
    router: Router
    session: FrostDkgSession
    behaviour: str | None
    up: bool = True
    events: list[Event] = field(default_factory=list)

    def on_message(self, data: bytes, src: int, now: float) -> list[tuple[int, bytes, str]]:
        if self.behaviour == "silent":
            return []
        return [(o.to, o.data, o.kind) for o in self.router.receive(data, now)]

    def on_tick(self, now: float) -> list[tuple[int, bytes, str]]:
        if self.behaviour == "silent":
            return []
        return [(o.to, o.data, o.kind) for o in self.router.tick(now)]


class DkgRun:
    def __init__(
        self,
        t: int,
        n: int,
        seed: int = 1,
        suite: frost.Ciphersuite = frost.Ciphersuite.SECP256K1_TR,
        byzantine: dict[int, str] | None = None,
        rtt: float = 0.153,
        deadline: float = 10.0,
    ) -> None:
        self.net = Network(seed, LinkModel(rtt))
        self.deadline = deadline
        byzantine = byzantine or {}
        ids = tuple(range(1, n + 1))
        identities = {i: Identity.from_seed(i, b"dkg" + seed.to_bytes(8, "big")) for i in ids}
        directory: dict[int, PeerKeys] = {i: x.public for i, x in identities.items()}
        session_id = hashlib.sha256(b"dkg" + seed.to_bytes(8, "big")).digest()
        self.nodes: dict[int, DkgNode] = {}
        for i in ids:
            cls = _ByzantineDkg if i in byzantine else FrostDkgSession
            session = cls(session_id, 1, i, ids, t, suite, deadline)
            if isinstance(session, _ByzantineDkg):
                session.behaviour = byzantine[i]
            router = Router(identities[i], directory, 1)
            node = DkgNode(i, router, session, byzantine.get(i))
            router.on_event = lambda _sid, ev, node=node: node.events.append(ev)
            self.nodes[i] = node
            self.net.add(node)
        self._started = False

    def execute(self) -> dict[int, list[Event]]:
        for i, node in self.nodes.items():
            out = node.router.register(node.session, KINDS, 0.0, private_kinds={"dkg/r2"})
            if node.behaviour != "silent":
                for o in out:
                    self.net.send(i, o.to, o.data, o.kind)

        def finished() -> bool:
            return all(n.session.done for n in self.nodes.values() if n.behaviour != "silent")

        self.net.run(self.deadline + 1.0, stop=finished)
        return {i: n.events for i, n in self.nodes.items()}

    def outcome(self, node: int) -> dict[str, Any]:
        for ev in self.nodes[node].events:
            if ev.name in ("key_ready", "aborted"):
                return {"event": ev.name, **ev.data}
        return {"event": "none"}
