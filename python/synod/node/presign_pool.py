"""`PresignPool`: one member's pool of CGGMP presignatures (seed 003 §3.3, §7.1).

Per ECDSA key the member keeps presignatures made ahead of time, so that signing from one
is a single round of partial signatures (`CggmpSigningDriver`'s presigned attempt) instead
of the interactive protocol's seconds of proofs.

Filling. Each member leads presigning runs for itself: while it holds fewer than
`target` fresh presignatures of a key, it picks t signers (itself and t − 1 members its
links show connected), proposes the run to them over the `PoolChannel` and starts it; up to
`batch` runs at once while below `minimum`, one at a time above it. A member joins a run
another proposed when it holds that key, the proposer has at most `batch` runs with it in
flight (one may still be finishing here while the proposer starts the next), it takes
part in fewer than `batch` × (t + 1) runs in all, and its pool is below twice its target:
a member cannot be made to presign without bound, and the pool's share of the member's
CPU is bounded; while the member is signing, it starts no run. A
finished run's presignature is moved into the member's session store (sealed, by the
run's session id, with its signers) before anything else can use it; it is taken out
once, erased in the same transaction, by the signing attempt that uses it.

Emptying. Presignatures older than `ttl_s` are discarded (their ciphertext erased). A
presignature whose run failed on another member never reaches the pool there; a signing
attempt that names one a signer no longer holds times out, and the next attempt signs
interactively, so a pool that disagrees across members costs time, never a signature.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from synod.crypto import ecdsa
from synod.node.results import SessionStatus
from synod.node.signer_node import SignerNode, ecdsa_members
from synod.protocols.base import Event
from synod.protocols.presign_pool import KINDS as CHANNEL_KINDS
from synod.protocols.presign_pool import PoolChannel
from synod.state.session_store import StoreError

log = logging.getLogger("synod.node.presign_pool")

PROPOSALS = 256  # proposals waiting for the next tick, at most
PRUNE_EVERY_S = 10.0
TICK_S = 0.2  # how often the pool looks at its runs, proposals and levels


@dataclass(frozen=True)
class PoolPolicy:
    """How full a member keeps its pool, per key (configuration: `synod node run --presign-*`)."""

    target: int = 100
    minimum: int = 20
    batch: int = 1
    ttl_s: float = 24 * 3600.0
    run_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.target < 0 or not 0 <= self.minimum <= self.target:
            raise ValueError("presignature pool: need 0 <= minimum <= target")
        if self.batch < 1 or self.ttl_s <= 0 or self.run_timeout_s <= 0:
            raise ValueError("presignature pool: batch, ttl and run timeout must be positive")


class PresignatureStore(Protocol):
    """The part of the member's session store the pool keeps presignatures in."""

    def put_presignature(
        self, presignature_id: str, key_id: str, presignature: ecdsa.Presignature
    ) -> None: ...
    def take_presignature(self, presignature_id: str) -> ecdsa.Presignature | None: ...
    def fresh_presignatures(self, key_id: str) -> list[tuple[str, tuple[int, ...]]]: ...
    def fresh_presignature_counts(self) -> dict[str, int]: ...
    def discard_presignatures(self, key_id: str, older_than: float | None = None) -> int: ...
    def settle(self) -> None: ...


@dataclass(frozen=True)
class _Run:
    key_id: str
    leader: int
    signers: tuple[int, ...]


class PresignPool:
    """Fills and serves one member's pool; ticked on the node's thread (`NodeRunner`)."""

    def __init__(
        self,
        node: SignerNode,
        store: PresignatureStore,
        policy: PoolPolicy,
        reachable: Callable[[], Collection[int]],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.store = store
        self.policy = policy
        self.reachable = reachable
        self.wall_clock = wall_clock
        committee = tuple(sorted({*node.router.directory, node.node_id}))
        self.channel = PoolChannel(node.epoch, node.node_id, committee)
        self.running: dict[bytes, _Run] = {}
        self.counters = {
            "made": 0,
            "failed": 0,
            "joined": 0,
            "refused": 0,
            "declined": 0,
            "pruned": 0,
        }
        self._proposals: deque[Event] = deque(maxlen=PROPOSALS)
        self._next_prune = 0.0
        self._next_tick = 0.0
        self._busy = False
        self._declines: list[tuple[int, bytes]] = []  # (signer, run) to tell: the run is off
        self._rng = random.SystemRandom()

    def install(self, now: float) -> None:
        """Open the channel and become the node's presignature source."""
        self.node.attach(self.channel, CHANNEL_KINDS, now)
        self.node.observers.append(self._observe)
        self.node.presignatures = self

    def max_running(self, threshold: int) -> int:
        """Runs this member takes part in at once, led or joined: what bounds the CPU the
        pool takes from signing. With every member leading `batch` runs of t signers, a
        member is in about `batch` × t of them; one more leaves room for the turnover."""
        return self.policy.batch * (threshold + 1)

    # -- PresignatureSource --------------------------------------------------------------
    def choose(self, key_id: str) -> tuple[str, tuple[int, ...]] | None:
        share = self.node.keys.ecdsa_keys.get(key_id)
        if share is None:
            return None
        members = ecdsa_members(share)
        up = {*self.reachable(), self.node.node_id}
        for pid, indices in self.store.fresh_presignatures(key_id):
            signers = tuple(members[i] for i in indices if 0 <= i < len(members))
            if len(signers) == len(indices) and set(signers) <= up:
                return pid, signers
        return None

    def signers_of(self, presignature_id: str, key_id: str) -> tuple[int, ...] | None:
        return dict(self.store.fresh_presignatures(key_id)).get(presignature_id)

    def take(self, presignature_id: str) -> ecdsa.Presignature | None:
        try:
            return self.store.take_presignature(presignature_id)
        except StoreError as err:  # a damaged row here: gone either way, sign interactively
            log.warning("presignature %s unusable: %s", presignature_id[:12], err)
            return None

    def settle(self) -> None:
        self.store.settle()

    # -- levels ------------------------------------------------------------------------
    def levels(self) -> dict[str, int]:
        """Fresh presignatures per ECDSA key this member holds."""
        counts = self.store.fresh_presignature_counts()
        return {key_id: counts.get(key_id, 0) for key_id in sorted(self.node.keys.ecdsa_keys)}

    # -- driven by the runner ------------------------------------------------------------
    def tick(self, now: float) -> None:
        if now < self._next_tick:
            return
        self._next_tick = now + TICK_S
        self._collect()
        declines, self._declines = self._declines, []
        for member, sid in declines:
            self.node.send(self.channel, self.channel.decline(member, sid), now)
        # signing comes first: while a signature is being made here, no new run starts
        self._busy = self.node.signing()
        if self.wall_clock() >= self._next_prune:
            self._prune()
        levels = self.store.fresh_presignature_counts()  # once: joining adds none
        while self._proposals:
            self._join(self._proposals.popleft(), levels, now)
        if self.policy.target and not self._busy:
            for key_id in sorted(self.node.keys.ecdsa_keys):
                self._lead(key_id, levels.get(key_id, 0), now)

    def _observe(self, session_id: bytes, event: Event) -> None:
        if session_id != self.channel.session_id:
            return
        if event.name == "proposed":
            self._proposals.append(event)  # the oldest is forgotten when full
        elif event.name == "declined":
            sid, member = bytes(event.data["session_id"]), int(event.data["member"])
            run = self.running.get(sid)
            if run is None or member not in run.signers:
                return
            # a signer will not take part: the run is off (left to its deadline); its leader
            # tells the other signers, and leads another
            del self.running[sid]
            self.counters["declined"] += 1
            me = self.node.node_id
            if run.leader == me:  # sent on the next tick, not from inside a delivery
                self._declines += [(s, sid) for s in run.signers if s not in (me, member)]

    def _collect(self) -> None:
        for sid, run in list(self.running.items()):
            result = self.node.result(sid)
            if result is None or not result.finished:
                continue
            del self.running[sid]
            output, result.output = result.output, None
            if result.status is SessionStatus.DONE and isinstance(output, ecdsa.Presignature):
                self.store.put_presignature(sid.hex(), run.key_id, output)
                self.counters["made"] += 1
            else:
                self.counters["failed"] += 1
                log.info("presigning run %s failed: %s", sid.hex()[:12], result.reason)

    def _prune(self) -> None:
        self._next_prune = self.wall_clock() + PRUNE_EVERY_S
        older_than = self.wall_clock() - self.policy.ttl_s
        for key_id in sorted(self.node.keys.ecdsa_keys):
            self.counters["pruned"] += self.store.discard_presignatures(key_id, older_than)

    def _led(self, key_id: str, leader: int) -> int:
        return sum(1 for r in self.running.values() if r.key_id == key_id and r.leader == leader)

    def _join(self, event: Event, levels: dict[str, int], now: float) -> None:
        key_id, sid = str(event.data["key_id"]), bytes(event.data["session_id"])
        signers, leader = tuple(event.data["signers"]), int(event.data["leader"])
        share = self.node.keys.ecdsa_keys.get(key_id)
        level = levels.get(key_id, 0)
        if (
            share is None
            or self._busy
            or len(self.running) >= self.max_running(share.threshold)
            or len(signers) != share.threshold
            or not set(signers) <= set(ecdsa_members(share))
            or self._led(key_id, leader) > self.policy.batch  # one more: its last may finish
            or level + len(self.running) >= 2 * max(self.policy.target, 1)
        ):
            self.counters["refused"] += 1
            self.node.send(self.channel, self.channel.decline(leader, sid), now)
            return
        self._start(key_id, sid, _Run(key_id, leader, signers), now)
        self.counters["joined"] += 1

    def _lead(self, key_id: str, level: int, now: float) -> None:
        share = self.node.keys.ecdsa_keys[key_id]
        me = self.node.node_id
        mine = self._led(key_id, me)
        at_once = self.policy.batch if level < self.policy.minimum else 1
        if level + mine >= self.policy.target or mine >= at_once:
            return
        if len(self.running) >= self.max_running(share.threshold):
            return  # busy with runs others lead
        peers = sorted(set(self.reachable()) & set(ecdsa_members(share)) - {me})
        if len(peers) < share.threshold - 1:
            return  # not enough members reachable to presign with
        signers = tuple(sorted({me, *self._rng.sample(peers, share.threshold - 1)}))
        sid = hashlib.sha256(
            b"synod/presign/" + key_id.encode() + me.to_bytes(4, "big") + os.urandom(16)
        ).digest()
        self.node.send(self.channel, self.channel.propose(key_id, sid, signers), now)
        self._start(key_id, sid, _Run(key_id, me, signers), now)

    def _start(self, key_id: str, sid: bytes, run: _Run, now: float) -> None:
        if sid in self.running or self.node.result(sid) is not None:
            return
        try:
            self.node.start_presign(
                key_id, sid, run.signers, now, timeout=self.policy.run_timeout_s
            )
        except ValueError as err:
            log.info("presigning run %s not started: %s", sid.hex()[:12], err)
            return
        self.running[sid] = run
