"""Test-edge peer links for node runners in one process: a bounded queue and one pump
thread that hands envelopes to the receiving runner (the gRPC peer transport replaces
this in a node process). A member marked down neither sends nor receives."""

from __future__ import annotations

import queue
import threading

from synod.node.runner import NodeRunner

TICK_S = 0.02


class LoopbackNet:
    def __init__(self, capacity: int = 100_000) -> None:
        self.runners: dict[int, NodeRunner] = {}
        self.down: set[int] = set()
        self.dropped = 0
        self._queue: queue.Queue[tuple[int, int, bytes]] = queue.Queue(capacity)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="loopback-net", daemon=True)

    def transport(self, me: int) -> LoopbackLink:
        return LoopbackLink(self, me)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                src, dst, data = self._queue.get(timeout=TICK_S)
            except queue.Empty:
                pass
            else:
                runner = self.runners.get(dst)
                if runner is not None and src not in self.down and dst not in self.down:
                    runner.deliver(data)


class LoopbackLink:
    """One member's `Transport`: never blocks; a full queue drops (counted)."""

    def __init__(self, net: LoopbackNet, me: int) -> None:
        self.net = net
        self.me = me

    def send(self, to: int, data: bytes, kind: str) -> None:
        try:
            self.net._queue.put_nowait((self.me, to, data))
        except queue.Full:
            self.net.dropped += 1
