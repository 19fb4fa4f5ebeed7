"""The two things a `SignerNode` is driven through: a transport for its outbound bytes and
a clock.

Inbound bytes go the other way, without an interface: whoever owns the transport
(the gRPC peer service, the simulator) calls `SignerNode.on_message(data, now)` for
every envelope it receives and `SignerNode.on_tick(now)` periodically.
"""

from __future__ import annotations

import time
from typing import Protocol


class Transport(Protocol):
    def send(self, to: int, data: bytes, kind: str) -> None:
        """Queue wire bytes for member `to`; never blocks; a full queue drops (counted)."""
        ...


class Clock(Protocol):
    def now(self) -> float: ...


class MonotonicClock:
    """Production time: seconds on the process's monotonic clock.

    Only differences matter to a node (deadlines, aggregator turns counted from the
    moment a session was started on it), so a clock that never jumps is the right one.
    """

    def now(self) -> float:
        return time.monotonic()
