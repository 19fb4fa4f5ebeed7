"""ROAST signing runs in the simulator: a committee of nodes, an adversary, one message.

Each member is a production `SignerNode` (identity, router, encrypted session
store, its FROST key share, the ROAST signer and the aggregator-turn logic) behind
the simulator's transport. Members the adversary corrupts build their sessions
through `ByzantineFactory` and send through `ByzantineHost` (`synod.sim.adversary`).
A crash drops a node's volatile state; the store and the key ring survive.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synod.crypto import frost
from synod.node.keyring import KeyRing
from synod.node.signer_node import SignerNode
from synod.protocols.envelope import Identity, PeerKeys
from synod.protocols.roast import AggregatorSchedule, RoastCoordinator
from synod.sim.adversary import Adversary, ByzantineFactory, ByzantineHost
from synod.sim.host import BufferTransport, Wire
from synod.sim.network import LinkModel, Network
from synod.state.session_store import SessionStore

KEY_ID = "sim"


class RoastMember(ByzantineHost):
    """One committee member of a simulated signing: a `SignerNode` (rebuilt on restart
    from its identity, key ring and store, which survive a crash) on the network."""

    def __init__(
        self,
        node_id: int,
        run: RoastRun,
        identity: Identity,
        directory: dict[int, PeerKeys],
        keys: KeyRing,
        store: SessionStore,
    ) -> None:
        super().__init__(
            node_id,
            None,
            BufferTransport(),
            run.adversary,
            identity,
            run.schedule.committee,
            run.rng,
        )
        self.run = run
        self.directory = directory
        self.keys = keys
        self.store = store
        self.steps = 0
        self.crash_at_step: int | None = None
        self.restart_after: float | None = None

    # -- lifecycle -----------------------------------------------------------
    def boot(self, now: float) -> Wire:
        """Start (or restart) the node: volatile state is new, the store is the old one."""
        self.up = True
        self.transport = BufferTransport()
        node = SignerNode(
            self.identity,
            self.directory,
            self.run.schedule.epoch,
            self.transport,
            self.store,
            self.keys,
            ByzantineFactory(self.adversary),
            seen=self.store,
            now=now,
        )
        node.observers.append(lambda _sid, ev: self.run.observe(self.node_id, ev.name, ev.data))
        self.node = node
        node.start_signing(
            KEY_ID,
            self.run.session_id,
            self.run.message,
            self.run.validate,
            now,
            tweak=self.run.tweak,
            rotate_timeout=self.run.schedule.rotate_timeout,
            start=self.run.schedule.start,
        )
        return self.outbound(self.transport.drain())

    def crash(self) -> None:
        self.up = False
        self.node = None

    def on_message(self, data: bytes, src: int, now: float) -> Wire:
        if self.node is None:
            return []
        wire = super().on_message(data, src, now)
        self.steps += 1
        if self.crash_at_step == self.steps:
            # The message was handled (store writes are durable) but the node dies
            # before anything it wanted to send leaves: the worst moment for nonces.
            self.crash()
            if self.restart_after is not None:
                self.run.net.at(now + self.restart_after, self.restart)
            return []
        return wire

    def restart(self) -> None:
        for to, data, kind in self.boot(self.run.net.now):
            self.run.net.send(self.node_id, to, data, kind)

    def release(self) -> Wire:
        held = super().release()
        for to, data, kind in held:
            self.run.net.send(self.node_id, to, data, kind)
        return held


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
        self.nodes: dict[int, RoastMember] = {}
        for i in committee:
            keys = KeyRing()
            keys.add_frost(KEY_ID, self.keys[i], self.public)
            store = SessionStore(
                self.workdir / f"node-{i}.db",
                hashlib.sha256(b"store" + i.to_bytes(4, "big")).digest(),
                power_safe=False,
            )
            node = RoastMember(i, self, identities[i], directory, keys, store)
            self.nodes[i] = node
            self.net.add(node)

    def validate(self, session_id: bytes, message: bytes) -> bool:
        """The template binding every honest signer checks: the state's record for the session."""
        if self._validator is not None:
            return self._validator(session_id, message)
        return session_id == self.session_id and message == self.message

    def observe(self, node: int, name: str, data: dict[str, Any]) -> None:
        if name == "aggregator_turn":
            self.coordinators.append(data["coordinator"])
            return
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
            self.net.at(at + restart_after, self.nodes[node].restart)

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
        routers = [n.node.router for n in self.nodes.values() if n.node is not None]
        coord_cpu = sum(
            r.cpu.get("RoastCoordinator", 0.0) + r.cpu.get("EquivocatingCoordinator", 0.0)
            for r in routers
        )
        signer_cpu = [
            r.cpu.get("RoastSigner", 0.0) + r.cpu.get("ByzantineSigner", 0.0) for r in routers
        ]
        drops: Counter[str] = Counter()
        for r in routers:
            drops.update({k: v for k, v in r.counters.items() if k != "delivered"})
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
