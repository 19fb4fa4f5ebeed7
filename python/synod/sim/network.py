"""The event loop: a virtual clock and links with latency, jitter, loss and partitions.

Everything random comes from one `random.Random(seed)`, and events with equal
times are ordered by insertion, so a seed fixes the whole run. The transcript
records every send, delivery and drop as (time, event, src, dst, kind, size).
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol


@dataclass(frozen=True)
class LinkModel:
    """One-way delay rtt/2 · (1 ± jitter·u), u uniform in [0, 1); each message lost with `loss`."""

    rtt: float = 0.153
    jitter: float = 0.1
    loss: float = 0.0

    def delay(self, rng: random.Random) -> float:
        return max(0.0, self.rtt / 2 * (1 + self.jitter * (2 * rng.random() - 1)))


class SimNode(Protocol):
    node_id: int
    up: bool

    def on_message(self, data: bytes, src: int, now: float) -> list[tuple[int, bytes, str]]: ...
    def on_tick(self, now: float) -> list[tuple[int, bytes, str]]: ...


@dataclass(order=True)
class _Item:
    at: float
    seq: int
    action: Callable[[], None] = field(compare=False)


class Network:
    def __init__(self, seed: int, link: LinkModel, tick_interval: float = 0.05) -> None:
        self.rng = random.Random(seed)
        self.link = link
        self.tick_interval = tick_interval
        self.now = 0.0
        self.nodes: dict[int, SimNode] = {}
        self.partitions: list[frozenset[int]] = []
        self.transcript: list[tuple[float, str, int, int, str, int]] = []
        self.messages_sent = 0
        self.messages_received = 0
        self.cpu_by_node: dict[int, float] = {}
        self._queue: list[_Item] = []
        self._seq = 0
        self.intercept: Callable[[int, int, bytes, str], list[tuple[int, bytes, str]]] | None = None

    def add(self, node: SimNode) -> None:
        self.nodes[node.node_id] = node
        self.cpu_by_node[node.node_id] = 0.0
        self.at(self.rng.random() * self.tick_interval, partial(self._tick, node))

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Item(when, self._seq, action))

    def partition(self, *groups: set[int]) -> None:
        """Split the network: messages cross only within a group. `heal()` undoes it."""
        self.partitions = [frozenset(g) for g in groups]

    def heal(self) -> None:
        self.partitions = []

    def _connected(self, a: int, b: int) -> bool:
        return not self.partitions or any(a in g and b in g for g in self.partitions)

    def send(self, src: int, dst: int, data: bytes, kind: str) -> None:
        self.messages_sent += 1
        if not self._connected(src, dst):
            self.transcript.append((self.now, "drop-partition", src, dst, kind, len(data)))
            return
        if self.link.loss and self.rng.random() < self.link.loss:
            self.transcript.append((self.now, "drop-loss", src, dst, kind, len(data)))
            return
        self.transcript.append((self.now, "send", src, dst, kind, len(data)))
        self.at(self.now + self.link.delay(self.rng), lambda: self._deliver(src, dst, data, kind))

    def _deliver(self, src: int, dst: int, data: bytes, kind: str) -> None:
        node = self.nodes.get(dst)
        if node is None or not node.up:
            self.transcript.append((self.now, "drop-down", src, dst, kind, len(data)))
            return
        self.messages_received += 1
        self.transcript.append((self.now, "recv", src, dst, kind, len(data)))
        started = time.process_time()
        out = node.on_message(data, src, self.now)
        self.cpu_by_node[dst] += time.process_time() - started
        self._send_all(dst, out)

    def _tick(self, node: SimNode) -> None:
        if node.up:
            started = time.process_time()
            out = node.on_tick(self.now)
            self.cpu_by_node[node.node_id] += time.process_time() - started
            self._send_all(node.node_id, out)
        self.at(self.now + self.tick_interval, partial(self._tick, node))

    def _send_all(self, src: int, out: list[tuple[int, bytes, str]]) -> None:
        for dst, data, kind in out:
            if self.intercept is not None:
                for d2, data2, k2 in self.intercept(src, dst, data, kind):
                    self.send(src, d2, data2, k2)
            else:
                self.send(src, dst, data, kind)

    def run(self, until: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Process events in time order until `until` (virtual seconds) or `stop()` holds."""
        while self._queue and not stop():
            item = self._queue[0]
            if item.at > until:
                break
            heapq.heappop(self._queue)
            self.now = item.at
            item.action()
        if not stop():
            self.now = max(self.now, until)


class VirtualClock:
    """The simulator's `Clock`: the network's virtual time."""

    def __init__(self, net: Network) -> None:
        self.net = net

    def now(self) -> float:
        return self.net.now
