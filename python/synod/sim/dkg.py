"""FROST DKG runs in the simulator, with optional misbehaving participants.

Behaviours: ``silent`` (never sends), ``bad-share`` (sends one peer a round-2
share meant for someone else), ``equivocate`` (shows different round-1
packages to different peers).
"""

from __future__ import annotations

import hashlib
from typing import Any

from synod.crypto import frost
from synod.protocols.base import Send
from synod.protocols.dkg import R1, R2, FrostDkgSession
from synod.sim.cluster import Cluster

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
        self.deadline = deadline
        self.byzantine = byzantine or {}
        ids = tuple(range(1, n + 1))
        self.cluster = Cluster(ids, seed, rtt)
        session_id = hashlib.sha256(b"dkg" + seed.to_bytes(8, "big")).digest()
        self.sessions: dict[int, FrostDkgSession] = {}
        for i in ids:
            cls = _ByzantineDkg if i in self.byzantine else FrostDkgSession
            session = cls(session_id, 1, i, ids, t, suite, deadline)
            if isinstance(session, _ByzantineDkg):
                session.behaviour = self.byzantine[i]
            self.sessions[i] = session
            self.cluster.nodes[i].silent = self.byzantine.get(i) == "silent"

    @property
    def nodes(self) -> dict[int, Any]:
        return self.cluster.nodes

    def execute(self) -> None:
        for i, session in self.sessions.items():
            self.cluster.start(i, session, KINDS, private={"dkg/r2"})
        honest = [s for i, s in self.sessions.items() if self.byzantine.get(i) != "silent"]
        self.cluster.run(self.deadline + 1.0, honest)

    def outcome(self, node: int) -> dict[str, Any]:
        ev = self.cluster.first(node, "key_ready", "aborted")
        return {"event": "none"} if ev is None else {"event": ev.name, **ev.data}
