"""A simulated cluster for one-shot sessions (DKG, resharing, CGGMP): one router per node,
one or more sessions per node, messages over the simulated network."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from synod.protocols.base import Event, Session
from synod.protocols.envelope import Identity
from synod.protocols.router import Router
from synod.sim.network import LinkModel, Network

Wire = list[tuple[int, bytes, str]]


@dataclass
class ClusterNode:
    node_id: int
    router: Router
    silent: bool = False
    up: bool = True
    events: list[Event] = field(default_factory=list)

    def on_message(self, data: bytes, src: int, now: float) -> Wire:
        out = [(o.to, o.data, o.kind) for o in self.router.receive(data, now)]
        return [] if self.silent else out

    def on_tick(self, now: float) -> Wire:
        out = [(o.to, o.data, o.kind) for o in self.router.tick(now)]
        return [] if self.silent else out


class Cluster:
    def __init__(
        self, node_ids: Iterable[int], seed: int = 1, rtt: float = 0.153, epoch: int = 1
    ) -> None:
        self.net = Network(seed, LinkModel(rtt))
        ids = sorted(node_ids)
        identities = {i: Identity.from_seed(i, b"cluster" + seed.to_bytes(8, "big")) for i in ids}
        directory = {i: x.public for i, x in identities.items()}
        self.nodes: dict[int, ClusterNode] = {}
        for i in ids:
            node = ClusterNode(i, Router(identities[i], directory, epoch))
            node.router.on_event = lambda _sid, ev, node=node: node.events.append(ev)
            self.nodes[i] = node
            self.net.add(node)

    def start(
        self, node: int, session: Session, kinds: set[str], private: Iterable[str] = ()
    ) -> None:
        n = self.nodes[node]
        out = n.router.register(session, kinds, self.net.now, private_kinds=private)
        if not n.silent:
            for o in out:
                self.net.send(node, o.to, o.data, o.kind)

    def run(self, until: float, sessions: Iterable[Session]) -> None:
        watched = list(sessions)
        self.net.run(until, stop=lambda: all(s.done for s in watched))

    def first(self, node: int, *names: str) -> Event | None:
        return next((e for e in self.nodes[node].events if e.name in names), None)
