"""Resource limits of a node's protocol layer, and the replay memory they bound.

Every buffer a peer can write to has a cap in entries and in bytes, per peer and in
total; what does not fit is dropped and counted. The replay memory keeps the digests of
envelopes accepted within a time window (by the envelope's signed send time); older
envelopes are refused as ``stale``, so forgetting them is safe. A peer that sends more
distinct envelopes within one window than its share of the memory is refused as
``rate_limited`` until its oldest entries leave the window. With a store the memory
survives a restart.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

DIGEST_LEN = 16  # bytes of SHA-256 kept per accepted envelope


@dataclass(frozen=True)
class Limits:
    """Caps of the router and its sessions (defaults suit a committee of up to ~1,000)."""

    replay_window_s: float = 120.0  # envelopes sent longer ago than this are `stale`
    clock_skew_s: float = 30.0  # envelopes sent further in the future are `future_time`
    replay_per_peer: int = 20_000  # distinct envelopes a peer may send within one window
    early_sessions: int = 256  # sessions with early (not yet handled) envelopes
    early_per_session: int = 4096
    early_per_peer: int = 1024
    early_bytes_per_peer: int = 8 << 20
    early_bytes_total: int = 64 << 20
    # closed sessions remembered (their envelopes are `closed_session` drops), oldest
    # forgotten first; above a node's `max_results`, so a session it still reports stays closed
    closed_sessions: int = 16_384

    def replay_bytes_bound(self, peers: int) -> int:
        """Upper bound of the replay memory's size in bytes (digest, time, heap and dict
        overheads of CPython included) for `peers` peers."""
        return peers * self.replay_per_peer * REPLAY_ENTRY_BYTES


REPLAY_ENTRY_BYTES = 400  # generous per-entry size: a 16-byte bytes object, a heap tuple, a slot


class SeenLog(Protocol):
    """Durable table of accepted envelope digests (the node's session store)."""

    def remember_envelope(self, digest: bytes, sender: int, sent_ms: int) -> None: ...

    def seen_envelopes(self, since_ms: int) -> list[tuple[bytes, int, int]]: ...

    def forget_envelopes(self, before_ms: int) -> None: ...


class ReplayWindow:
    """Digests of accepted envelopes within the window, at most `replay_per_peer` per peer."""

    def __init__(self, limits: Limits, store: SeenLog | None = None, now: float = 0.0) -> None:
        self.limits = limits
        self.store = store
        self._seen: dict[bytes, int] = {}  # digest -> sender
        self._by_age: list[tuple[int, bytes]] = []  # (sent_ms, digest), a min-heap
        self._per_peer: Counter[int] = Counter()
        if store is not None:
            for digest, sender, sent_ms in store.seen_envelopes(self._horizon(now)):
                self._add(digest, sender, sent_ms)

    def __len__(self) -> int:
        return len(self._seen)

    def _horizon(self, now: float) -> int:
        return int((now - self.limits.replay_window_s) * 1000)

    def _add(self, digest: bytes, sender: int, sent_ms: int) -> None:
        self._seen[digest] = sender
        heapq.heappush(self._by_age, (sent_ms, digest))
        self._per_peer[sender] += 1

    def _expire(self, now: float) -> None:
        horizon = self._horizon(now)
        expired = False
        while self._by_age and self._by_age[0][0] < horizon:
            _, digest = heapq.heappop(self._by_age)
            sender = self._seen.pop(digest)
            self._per_peer[sender] -= 1
            if not self._per_peer[sender]:
                del self._per_peer[sender]
            expired = True
        if expired and self.store is not None:
            self.store.forget_envelopes(horizon)

    def check(self, digest: bytes, sender: int, sent_ms: int, now: float) -> str | None:
        """Why an envelope must be dropped (a counter name), or None after remembering it."""
        if sent_ms < self._horizon(now):
            return "stale"
        if sent_ms > (now + self.limits.clock_skew_s) * 1000:
            return "future_time"
        key = digest[:DIGEST_LEN]
        if key in self._seen:
            return "replay"
        if self._per_peer[sender] >= self.limits.replay_per_peer:
            self._expire(now)
            if self._per_peer[sender] >= self.limits.replay_per_peer:
                return "rate_limited"
        self._add(key, sender, sent_ms)
        if self.store is not None:
            self.store.remember_envelope(key, sender, sent_ms)
        if len(self._by_age) % 1024 == 0:
            self._expire(now)
        return None
