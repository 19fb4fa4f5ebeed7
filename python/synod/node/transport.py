"""How a node talks to its peers and reads the time: two small interfaces."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    def send(self, to: int, data: bytes, kind: str) -> None:
        """Queue wire bytes for member `to`; never blocks; a full queue drops (counted)."""


class Clock(Protocol):
    def now(self) -> float: ...
