"""ROAST signing runs in the simulator: a committee of nodes, an adversary, one message.

Each node owns an identity, a router, an encrypted session store and a FROST
key share, and runs exactly the production sessions (`RoastSigner`,
`RoastCoordinator`). Corrupted nodes run `ByzantineSigner`, which deviates as
its behaviour says. A crash drops a node's volatile state; the store survives.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from synod.crypto import frost
from synod.protocols.base import Send
from synod.protocols.codec import pack, unpack
from synod.protocols.envelope import Envelope, Identity, PeerKeys
from synod.protocols.roast import (
    COMMIT,
    DONE,
    OPEN,
    SHARE,
    SIGN,
    AggregatorSchedule,
    RoastCoordinator,
    RoastSigner,
)
from synod.protocols.router import Outbound, Router
from synod.sim.adversary import Adversary
from synod.sim.network import LinkModel, Network
from synod.state.session_store import SessionStore

Wire = list[tuple[int, bytes, str]]


class ByzantineSigner(RoastSigner):
    """A signer that deviates as the adversary says, from the moment it is corrupted.

    While its node is honest it is exactly `RoastSigner`; the adaptive attacker
    can corrupt it mid-run.
    """

    adversary: Adversary | None = None
    _decoy: frost.SigningCommitments | None = None

    @property
    def behaviour(self) -> str | None:
        return None if self.adversary is None else self.adversary.behaviour_of(self.me)

    def _offer(self, idx: int) -> list[Send]:
        sends = super()._offer(idx)
        if self.behaviour != "equivocate":
            return sends
        # Offer a commitment whose nonces this signer does not hold.
        _, self._decoy = frost.commit(self.key_package)
        return [Send(s.to, s.kind, s.round, pack(idx, self._decoy.to_bytes())) for s in sends]

    def _on_sign(self, idx: int, sub_id: int, raw: bytes) -> list[Send]:
        b = self.behaviour
        if b == "withhold":
            return []
        if b == "equivocate" and self.outstanding is not None:
            # The package carries the decoy; sign as if it carried the real commitment.
            package = frost.SigningPackage.from_bytes(raw)
            swapped = {**package.commitments(), self.me: self.outstanding[1]}
            raw = frost.signing_package(swapped, package.message).to_bytes()
        sends = super()._on_sign(idx, sub_id, raw)
        if b == "malformed":
            return [Send(s.to, s.kind, s.round, b"\x00garbage" + s.payload[:7]) for s in sends]
        if b == "invalid-share":
            out = []
            for s in sends:
                i, sid, share, nxt = unpack(s.payload, "iibb")
                assert isinstance(share, bytes)
                bad = share[:-1] + bytes([share[-1] ^ 1])
                out.append(Send(s.to, s.kind, s.round, pack(i, sid, bad, nxt)))
            return out
        return sends


@dataclass
class RoastNode:
    node_id: int
    net: Network
    identity: Identity
    directory: dict[int, PeerKeys]
    schedule: AggregatorSchedule
    threshold: int
    key_package: frost.KeyPackage
    public: frost.PublicKeyPackage
    message: bytes
    tweak: frost.TaprootTweak | None
    store: SessionStore
    adversary: Adversary
    run: RoastRun
    up: bool = True
    router: Router | None = None
    coordinators: dict[int, RoastCoordinator] = field(default_factory=dict)
    seen: list[bytes] = field(default_factory=list)
    held: Wire = field(default_factory=list)
    steps: int = 0
    crash_at_step: int | None = None
    restart_after: float | None = None

    # -- lifecycle -----------------------------------------------------------
    def boot(self, now: float) -> Wire:
        self.up = True
        self.coordinators = {}
        self.router = Router(
            self.identity, self.directory, self.schedule.epoch, seen_store=self.store, now=now
        )
        self.router.on_event = lambda _sid, ev: self.run.observe(self.node_id, ev.name, ev.data)
        signer = ByzantineSigner(
            self.schedule,
            self.node_id,
            self.key_package,
            self.public,
            self.run.validate,
            self.store,
            self.tweak,
            message=self.message,
        )
        signer.adversary = self.adversary
        return self._wire(self.router.register(signer, {OPEN, SIGN, DONE}, now))

    def crash(self) -> None:
        self.up = False
        self.router = None
        self.coordinators = {}

    # -- network side ----------------------------------------------------------
    def on_message(self, data: bytes, src: int, now: float) -> Wire:
        if self.router is None:
            return []
        if self.adversary.behaviour_of(self.node_id) == "replay":
            self.seen.append(data)
        out = self.router.receive(data, now)
        self.steps += 1
        if self.crash_at_step == self.steps:
            # The message was handled (store writes are durable) but the node dies
            # before anything it wanted to send leaves: the worst moment for nonces.
            self.crash()
            if self.restart_after is not None:
                self.net.at(now + self.restart_after, self._restart)
            return []
        return self._wire(out)

    def _restart(self) -> None:
        for to, data, kind in self.boot(self.net.now):
            self.net.send(self.node_id, to, data, kind)

    def on_tick(self, now: float) -> Wire:
        if self.router is None:
            return []
        out: list[Outbound] = []
        idx = self.schedule.index(now)
        if self.schedule.active(now) == self.node_id and idx not in self.coordinators:
            out += self._start_coordinator(idx, now)
        out += self.router.tick(now)
        wire = self._wire(out)
        if self.adversary.behaviour_of(self.node_id) == "replay" and self.seen:
            rng = self.run.rng
            for _ in range(2):
                data = rng.choice(self.seen)
                wire.append((rng.choice(self.schedule.committee), data, "replay"))
        return wire

    def _start_coordinator(self, idx: int, now: float) -> list[Outbound]:
        assert self.router is not None
        behaviour = self.adversary.behaviour_of(self.node_id)
        if behaviour in ("stall-aggregator", "silent", "stale-epoch"):
            self.coordinators[idx] = None  # type: ignore[assignment]  # its turn passes idle
            return []
        message = self.message
        if behaviour == "equivocate-aggregator":
            message = hashlib.sha256(b"forged template" + self.message).digest()
        coord = RoastCoordinator(
            self.schedule, idx, self.node_id, self.threshold, self.public, message, self.tweak
        )
        self.coordinators[idx] = coord
        self.run.coordinators.append(coord)
        if behaviour == "equivocate-aggregator":
            # Half the committee is shown the real template, half the forged one.
            out = self.router.register(coord, {COMMIT, SHARE}, now, start=False)
            opens = [
                Send(peer, OPEN, 0, pack(idx, self.message if i % 2 else message))
                for i, peer in enumerate(self.schedule.committee)
            ]
            return out + self.router.send(coord, opens, now)
        return self.router.register(coord, {COMMIT, SHARE}, now)

    def _wire(self, out: list[Outbound]) -> Wire:
        behaviour = self.adversary.behaviour_of(self.node_id)
        if behaviour == "silent":
            return []
        wire: Wire = [(o.to, o.data, o.kind) for o in out]
        if behaviour == "stale-epoch":
            restamped: Wire = []
            for to, data, kind in wire:
                env = Envelope.from_bytes(data)
                env = replace(env, epoch=env.epoch - 1).sign(self.identity)
                restamped.append((to, env.to_bytes(), kind))
            wire = restamped
        if self.adversary.holds_commitment(self.node_id):
            self.held += [w for w in wire if w[2] == COMMIT]
            wire = [w for w in wire if w[2] != COMMIT]
        return wire

    def release(self) -> None:
        """Coordinated attacker: send the commitments held back so far."""
        for to, data, kind in self.held:
            self.net.send(self.node_id, to, data, kind)
        self.held = []


@dataclass
class RoastResult:
    t: int
    n: int
    malicious: int
    strategy: str
    seed: int
    ok: bool
    sessions_started: int
    success_session: int | None
    success_turn_sessions: int | None
    aggregator_turns: int
    virtual_elapsed_s: float
    messages_sent: int
    messages_received: int
    cpu_s: float
    cpu_coordinator_s: float
    cpu_signer_mean_s: float
    group_public_key: str
    message: str
    signature: str | None
    culprits: list[int]
    corrupted: list[int]
    drops: dict[str, int]
    failure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_KEY_CACHE: dict[
    tuple[str, int, int], tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage, str]
] = {}


def committee_keys(
    suite: frost.Ciphersuite, t: int, n: int
) -> tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage, str]:
    """Key shares for a simulated committee: a real DKG up to 30 parties, a dealer above.

    The simulator measures signing; a DKG among hundreds of parties in one process
    would dominate the run, so large committees are dealt by the import tool.
    """
    key = (suite.value, t, n)
    if key not in _KEY_CACHE:
        if n <= 30:
            keys, public = frost.local_dkg(suite, t, n)
            how = "dkg"
        else:
            from synod.crypto.import_export import split

            keys, public = split(suite, n, t)
            how = "dealer"
        _KEY_CACHE[key] = (keys, public, how)
    return _KEY_CACHE[key]


class RoastRun:
    """One simulated signing session: build, run, report."""

    def __init__(
        self,
        t: int,
        n: int,
        malicious: int = 0,
        strategy: str = "static",
        seed: int = 1,
        rtt: float = 0.153,
        jitter: float = 0.1,
        loss: float = 0.0,
        rotate_timeout: float = 5.0,
        max_time: float = 120.0,
        suite: frost.Ciphersuite = frost.Ciphersuite.SECP256K1_TR,
        tweak: frost.TaprootTweak | None = None,
        workdir: Path | None = None,
        shares: tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage] | None = None,
        message: bytes | None = None,
        session_id: bytes | None = None,
        validator: Callable[[bytes, bytes], bool] | None = None,
        corrupt: dict[int, str] | None = None,
    ) -> None:
        """`shares`, `message`, `session_id` and `validator` let a caller sign its own
        message with its own key shares (the runtime's simulated signer); by default the
        run makes a committee and a random-looking message from the seed."""
        if not 2 <= t <= n:
            raise ValueError(f"need 2 <= t <= n, got t={t}, n={n}")
        if not 0 <= malicious <= n:
            raise ValueError(f"malicious must be in 0..{n}")
        self.t, self.n, self.malicious, self.strategy, self.seed = t, n, malicious, strategy, seed
        self.max_time = max_time
        self.rng = random.Random(seed)
        self.net = Network(seed, LinkModel(rtt, jitter, loss))
        adv_rng = random.Random(seed ^ 0x5EED)
        if corrupt:
            self.adversary = Adversary.fixed(corrupt, adv_rng)
            self.malicious, self.strategy = len(corrupt), "+".join(sorted(set(corrupt.values())))
        else:
            self.adversary = Adversary(strategy, malicious, adv_rng)
        if shares is not None:
            self.keys, self.public = shares
            self.key_setup = "given"
            suite = self.public.suite
        else:
            self.keys, self.public, self.key_setup = committee_keys(suite, t, n)
        self.tweak = tweak
        default_sid = hashlib.sha256(b"withdrawal" + seed.to_bytes(8, "big")).digest()
        self.session_id = session_id or default_sid
        self.message = message or hashlib.sha256(b"template" + self.session_id).digest()
        self._validator = validator
        committee = tuple(sorted(self.keys))
        self.schedule = AggregatorSchedule(self.session_id, 1, committee, 0.0, rotate_timeout)
        self.adversary.choose_static(committee, self.schedule.candidates)
        self._tmp = tempfile.TemporaryDirectory(prefix="synod-sim-") if workdir is None else None
        self.workdir: Path = Path(self._tmp.name) if self._tmp is not None else Path(str(workdir))
        identities = {i: Identity.from_seed(i, seed.to_bytes(8, "big")) for i in committee}
        directory = {i: ident.public for i, ident in identities.items()}
        self.coordinators: list[RoastCoordinator] = []
        self.signed: dict[str, Any] | None = None
        self.events: Counter[str] = Counter()
        self.nodes: dict[int, RoastNode] = {}
        for i in committee:
            store = SessionStore(
                self.workdir / f"node-{i}.db",
                hashlib.sha256(b"store" + i.to_bytes(4, "big")).digest(),
                power_safe=False,
            )
            node = RoastNode(
                i,
                self.net,
                identities[i],
                directory,
                self.schedule,
                t,
                self.keys[i],
                self.public,
                self.message,
                tweak,
                store,
                self.adversary,
                self,
            )
            self.nodes[i] = node
            self.net.add(node)

    def validate(self, session_id: bytes, message: bytes) -> bool:
        """The template binding every honest signer checks: the state's record for the session."""
        if self._validator is not None:
            return self._validator(session_id, message)
        return session_id == self.session_id and message == self.message

    def observe(self, node: int, name: str, data: dict[str, Any]) -> None:
        self.events[name] += 1
        if name == "sub_session":
            for released in self.adversary.on_sub_session(tuple(data["signers"])):
                self.nodes[released].release()
        elif name == "signed" and "sub_id" in data and self.signed is None:
            self.signed = {**data, "at": self.net.now, "aggregator": node}

    def crash(self, node: int, at: float, restart_after: float | None = None) -> None:
        """Schedule a crash of one node at a virtual time (and optionally its restart)."""
        self.net.at(at, lambda: self.nodes[node].crash())
        if restart_after is not None:
            self.net.at(at + restart_after, self.nodes[node]._restart)

    def crash_at_step(self, node: int, step: int, restart_after: float | None = 1.0) -> None:
        """Crash `node` right after it handles its `step`-th message, before it sends anything."""
        self.nodes[node].crash_at_step = step
        self.nodes[node].restart_after = restart_after

    def share_commitments(self) -> list[tuple[int, bytes]]:
        """(signer, commitment) of every share an aggregator accepted, across all turns."""
        out = []
        for coord in self.coordinators:
            for sub in coord.subs.values():
                commitments = sub.package.commitments()
                out += [(i, commitments[i].raw) for i in sub.shares]
        return out

    def execute(self) -> RoastResult:
        cpu_start = time.process_time()
        for i, node in self.nodes.items():
            for to, data, kind in node.boot(0.0):
                self.net.send(i, to, data, kind)
        self.net.run(self.max_time, stop=lambda: self.signed is not None)
        cpu = time.process_time() - cpu_start
        culprits = sorted({c for coord in self.coordinators for c in coord.malicious})
        coord_cpu = sum(
            n.router.cpu.get("RoastCoordinator", 0.0)
            for n in self.nodes.values()
            if n.router is not None
        )
        signer_cpu = [
            n.router.cpu.get("RoastSigner", 0.0) + n.router.cpu.get("ByzantineSigner", 0.0)
            for n in self.nodes.values()
            if n.router is not None
        ]
        drops: Counter[str] = Counter()
        for n in self.nodes.values():
            if n.router is not None:
                drops.update({k: v for k, v in n.router.counters.items() if k != "delivered"})
        sig = self.signed["signature"].raw.hex() if self.signed else None
        failure = None
        if self.signed is None:
            failure = (
                f"no signature within {self.max_time:g}s of virtual time: "
                f"{len(culprits)} signers excluded, {self.malicious} corrupted of {self.n}, "
                f"threshold {self.t}"
            )
        self.nonce_uses = {i: node.store.nonce_uses() for i, node in self.nodes.items()}
        for node in self.nodes.values():
            node.store.close()
        return RoastResult(
            t=self.t,
            n=self.n,
            malicious=self.malicious,
            strategy=self.strategy,
            seed=self.seed,
            ok=self.signed is not None,
            sessions_started=sum(c.sessions_started for c in self.coordinators),
            success_session=self._global_success_index(),
            success_turn_sessions=next(
                (c.sessions_started for c in self.coordinators if c.signature is not None), None
            ),
            aggregator_turns=len(self.coordinators),
            virtual_elapsed_s=round(self.signed["at"] if self.signed else self.net.now, 6),
            messages_sent=self.net.messages_sent,
            messages_received=self.net.messages_received,
            cpu_s=cpu,
            cpu_coordinator_s=coord_cpu,
            cpu_signer_mean_s=sum(signer_cpu) / max(1, len(signer_cpu)),
            group_public_key=self.public.group_public_key(self.tweak).hex(),
            message=self.message.hex(),
            signature=sig,
            culprits=culprits,
            corrupted=sorted(self.adversary.corrupted),
            drops=dict(sorted(drops.items())),
            failure=failure,
        )

    def _global_success_index(self) -> int | None:
        """The successful sub-session, numbered across all aggregator turns."""
        if self.signed is None:
            return None
        total = 0
        for coord in self.coordinators:
            if coord.signature is not None:
                return total + (coord.success_session or 0)
            total += coord.sessions_started
        return None
