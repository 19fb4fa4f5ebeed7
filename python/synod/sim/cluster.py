"""A simulated committee of `SignerNode`s for one-shot sessions (DKG, resharing, CGGMP):
one node per member, its messages over the simulated network."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from synod.node.keyring import KeyRing
from synod.node.sessions import SessionFactory
from synod.node.signer_node import SignerNode
from synod.protocols.base import Event, Session
from synod.protocols.envelope import Identity
from synod.sim.host import BufferTransport, SimHost, Wire, node_store
from synod.sim.network import LinkModel, Network, VirtualClock


class ClusterNode(SimHost):
    """A member that records every event its node emits; a `silent` one sends nothing."""

    def __init__(self, node_id: int, node: SignerNode, transport: BufferTransport) -> None:
        super().__init__(node_id, node, transport)
        self.silent = False
        self.events: list[Event] = []
        node.observers.append(lambda _sid, ev: self.events.append(ev))

    @property
    def signer(self) -> SignerNode:
        assert self.node is not None
        return self.node

    def outbound(self, wire: Wire) -> Wire:
        return [] if self.silent else wire


class Cluster:
    def __init__(
        self,
        node_ids: Iterable[int],
        seed: int = 1,
        rtt: float = 0.153,
        epoch: int = 1,
        keys: Mapping[int, KeyRing] | None = None,
        factories: Mapping[int, SessionFactory] | None = None,
    ) -> None:
        self.net = Network(seed, LinkModel(rtt))
        self.clock = VirtualClock(self.net)
        ids = sorted(node_ids)
        identities = {i: Identity.from_seed(i, b"cluster" + seed.to_bytes(8, "big")) for i in ids}
        directory = {i: x.public for i, x in identities.items()}
        self.nodes: dict[int, ClusterNode] = {}
        for i in ids:
            transport = BufferTransport()
            node = SignerNode(
                identities[i],
                directory,
                epoch,
                transport,
                node_store(i),
                (keys or {}).get(i),
                (factories or {}).get(i),
            )
            self.nodes[i] = ClusterNode(i, node, transport)
            self.net.add(self.nodes[i])

    def flush(self, node: int) -> None:
        """Send what a node queued outside a message or tick (a session it just began)."""
        host = self.nodes[node]
        for to, data, kind in host.outbound(host.transport.drain()):
            self.net.send(node, to, data, kind)

    def start(
        self, node: int, session: Session, kinds: Iterable[str], private: Iterable[str] = ()
    ) -> None:
        """Run a hand-built session on a node (the `SignerNode.start_*` methods build theirs)."""
        self.nodes[node].signer.attach(session, kinds, self.net.now, private)
        self.flush(node)

    def run(self, until: float, sessions: Iterable[Session] = ()) -> None:
        watched = list(sessions)
        self.net.run(until, stop=lambda: bool(watched) and all(s.done for s in watched))

    def run_until(self, until: float, done: Iterable[tuple[int, bytes]]) -> None:
        """Run until every (node, session id) has a finished result, or until `until`."""
        pending = list(done)

        def finished() -> bool:
            for node, sid in pending:
                res = self.nodes[node].signer.result(sid)
                if res is None or not res.finished:
                    return False
            return True

        self.net.run(until, stop=finished)

    def first(self, node: int, *names: str) -> Event | None:
        return next((e for e in self.nodes[node].events if e.name in names), None)
