"""A `SignerNode` on the simulated network.

The simulator is one owner of the node's transport: `BufferTransport` collects what
the node sends while it handles one message or tick, and `SimHost` hands that to the
network (the `network.SimNode` interface). A faulty member is a `SimHost` subclass
that rewrites or withholds this outbound traffic, and whose node builds its
sessions through a Byzantine `SessionFactory`; everything else is the production node.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from synod.node.signer_node import SignerNode
from synod.state.session_store import SessionStore

Wire = list[tuple[int, bytes, str]]


class BufferTransport:
    """The simulator's `Transport`: a step's sends, handed to the network afterwards."""

    def __init__(self) -> None:
        self.out: Wire = []

    def send(self, to: int, data: bytes, kind: str) -> None:
        self.out.append((to, data, kind))

    def drain(self) -> Wire:
        out, self.out = self.out, []
        return out


def node_store(node_id: int, path: str | Path = ":memory:") -> SessionStore:
    """A simulated member's encrypted session store (no fsync: only processes crash here)."""
    key = hashlib.sha256(b"store" + node_id.to_bytes(4, "big")).digest()
    return SessionStore(path, key, power_safe=False)


class SimHost:
    """Puts one `SignerNode` on the network; `node` is None while the member is down."""

    def __init__(self, node_id: int, node: SignerNode | None, transport: BufferTransport) -> None:
        self.node_id = node_id
        self.node = node
        self.transport = transport
        self.up = node is not None

    def on_message(self, data: bytes, src: int, now: float) -> Wire:
        if self.node is None:
            return []
        self.node.on_message(data, now)
        return self.outbound(self.transport.drain())

    def on_tick(self, now: float) -> Wire:
        if self.node is None:
            return []
        self.node.on_tick(now)
        return self.outbound(self.transport.drain())

    def outbound(self, wire: Wire) -> Wire:
        """What actually leaves this member (an honest one sends everything)."""
        return wire
