"""FROST DKG runs in the simulator: a committee of `SignerNode`s, optionally with
misbehaving members.

Behaviours: ``silent`` (never sends), ``bad-share`` (sends one peer a round-2
share meant for someone else), ``equivocate`` (shows different round-1
packages to different peers).
"""

from __future__ import annotations

import hashlib
from typing import Any

from synod.crypto import frost
from synod.node.sessions import SessionFactory
from synod.protocols.base import Send
from synod.protocols.dkg import R1, R2, FrostDkgSession
from synod.sim.cluster import Cluster, ClusterNode

KEY_ID = "dkg"


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


class ByzantineDkgFactory(SessionFactory):
    """A member whose DKG session deviates as `behaviour` says."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    def frost_dkg(
        self,
        session_id: bytes,
        epoch: int,
        me: int,
        participants: tuple[int, ...],
        threshold: int,
        suite: frost.Ciphersuite,
        deadline: float,
    ) -> FrostDkgSession:
        session = _ByzantineDkg(session_id, epoch, me, participants, threshold, suite, deadline)
        session.behaviour = self.behaviour
        return session


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
        self.t, self.suite, self.deadline = t, suite, deadline
        self.byzantine = byzantine or {}
        self.ids = tuple(range(1, n + 1))
        factories = {i: ByzantineDkgFactory(b) for i, b in self.byzantine.items()}
        self.cluster = Cluster(self.ids, seed, rtt, factories=factories)
        self.session_id = hashlib.sha256(b"dkg" + seed.to_bytes(8, "big")).digest()
        for i in self.ids:
            self.cluster.nodes[i].silent = self.byzantine.get(i) == "silent"

    @property
    def nodes(self) -> dict[int, ClusterNode]:
        return self.cluster.nodes

    def execute(self) -> None:
        now = self.cluster.net.now
        for i in self.ids:
            node = self.cluster.nodes[i].signer
            node.start_dkg(
                KEY_ID, self.session_id, self.ids, self.t, self.suite, now, timeout=self.deadline
            )
            self.cluster.flush(i)
        honest = [i for i in self.ids if self.byzantine.get(i) != "silent"]
        self.cluster.run_until(self.deadline + 1.0, [(i, self.session_id) for i in honest])

    def outcome(self, node: int) -> dict[str, Any]:
        ev = self.cluster.first(node, "key_ready", "aborted")
        return {"event": "none"} if ev is None else {"event": ev.name, **ev.data}
