"""The router never raises on peer input.

A three-node committee runs one honest session of every kind (FROST DKG, ROAST as signer and
as coordinator, a CGGMP keygen run, the CGGMP signing driver, FROST resharing) and records
every envelope the victim (node 1) receives. The fuzzer then feeds a fresh victim thousands
of random and mutated envelopes, each correctly signed by a committee member, interleaved
with the honest ones: payload bit flips, truncations, extensions, random codec fields,
payloads spliced from other kinds, other kinds, rounds and session ids, private payloads
re-sealed with mutated plaintext. It checks that `Router.receive` never raises, that every
nonce the victim consumed produced a share that left the node, and that the same router can
still run an honest session to the end afterwards.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from synod.crypto import ecdsa, frost
from synod.protocols import cggmp, reshare
from synod.protocols.base import Send, Session
from synod.protocols.codec import pack, unpack
from synod.protocols.dkg import FrostDkgSession
from synod.protocols.envelope import BROADCAST, Envelope, Identity, open_sealed, seal
from synod.protocols.roast import (
    COMMIT,
    DONE,
    OPEN,
    SHARE,
    SIGN,
    AggregatorSchedule,
    RoastCoordinator,
    RoastSigner,
    aggregator_candidates,
)
from synod.protocols.router import Outbound, Router
from synod.state.session_store import SessionStore
from tests.fixtures import stored_aux

COMMITTEE = (1, 2, 3)
T = 2
VICTIM = 1
EPOCH = 1
IDS = {i: Identity.from_seed(i, b"fuzz") for i in COMMITTEE}
DIRECTORY = {i: x.public for i, x in IDS.items()}
MSG = b"\x42" * 32
DIGEST = b"\x24" * 32
SIGNER_KINDS = {OPEN, SIGN, DONE}
COORD_KINDS = {COMMIT, SHARE}
DKG_KINDS = {"dkg/r1", "dkg/echo", "dkg/r2", "dkg/ack", "dkg/abort"}
ALL_KINDS = sorted(SIGNER_KINDS | COORD_KINDS | DKG_KINDS | cggmp.DRIVER_KINDS | reshare.KINDS)
PRIVATE = {"dkg/r2", *cggmp.PRIVATE, *reshare.PRIVATE}
ROUNDS, PER_MESSAGE, NOISE = 25, 4, 60


def sid_led_by(node: int, tag: bytes) -> bytes:
    """A session id whose first aggregator candidate is `node`, with the victim among the
    first t candidates (so it signs in the first attempt)."""
    for i in range(1000):
        sid = tag + i.to_bytes(2, "big")
        cands = aggregator_candidates(sid, EPOCH, COMMITTEE)
        if cands[0] == node and VICTIM in cands[:T]:
            return sid
    raise AssertionError("no session id found")


@dataclass
class Keys:
    frost_keys: dict[int, frost.KeyPackage]
    frost_public: frost.PublicKeyPackage
    ecdsa_shares: list[ecdsa.KeyShare]


@pytest.fixture(scope="module")
def keys() -> Keys:
    kp, pub = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, T, len(COMMITTEE))
    return Keys(kp, pub, ecdsa.local_keygen(T, len(COMMITTEE), stored_aux(len(COMMITTEE))))


def settle(router: Router, out: list[Outbound], now: float) -> list[Outbound]:
    """`out` and what the router's messages to itself then send (as a node does)."""
    while router.local_pending:
        out = out + router.deliver_local(now)
    return out


class Node:
    """One router and the sessions it runs, with a session store per node."""

    def __init__(self, me: int, keys: Keys, tmp: Path, tag: bytes, suffix: str = "") -> None:
        self.me = me
        self.router = Router(IDS[me], DIRECTORY, EPOCH)
        self.router.on_event = lambda _sid, ev: self.events.append(ev)
        self.events: list[object] = []
        db = tmp / f"{tag.hex()}-{me}{suffix}.db"
        self.store = SessionStore(db, b"s" * 32, power_safe=False)
        self.sessions: list[Session] = []
        self.keys = keys
        self.tag = tag
        self.shares_signed = 0
        envelope = self.router._envelope

        def counting(session: Session, s: Send, to: int, payload: bytes) -> Envelope:
            self.shares_signed += s.kind == SHARE
            return envelope(session, s, to, payload)

        self.router._envelope = counting  # type: ignore[method-assign]

    def open_all(self, now: float) -> list[Outbound]:
        k, tag, me = self.keys, self.tag, self.me
        out: list[Outbound] = []

        def add(s: Session, kinds: set[str], start: bool = True) -> None:
            self.sessions.append(s)
            registered = self.router.register(s, kinds, now, private_kinds=PRIVATE, start=start)
            out.extend(settle(self.router, registered, now))

        add(
            FrostDkgSession(
                tag + b"dkg", EPOCH, me, COMMITTEE, T, frost.Ciphersuite.SECP256K1_TR, 30.0
            ),
            DKG_KINDS,
        )
        for sid in (sid_led_by(VICTIM, tag + b"rv"), sid_led_by(2, tag + b"r2")):
            sched = AggregatorSchedule(sid, EPOCH, COMMITTEE, 0.0, 5.0)
            add(
                RoastSigner(
                    sched,
                    me,
                    k.frost_keys[me],
                    k.frost_public,
                    lambda _s, m: m == MSG,
                    self.store,
                    message=MSG,
                ),
                SIGNER_KINDS,
            )
            if sched.candidates[0] == me:
                add(
                    RoastCoordinator(sched, 0, me, T, k.frost_public, MSG),
                    COORD_KINDS,
                )
        eid = (tag + b"\x00" * 32)[:32]
        add(
            cggmp.CggmpRun(
                tag + b"kg",
                EPOCH,
                me,
                COMMITTEE,
                COMMITTEE,
                lambda: ecdsa.KeygenSession(eid, me - 1, len(COMMITTEE), T),
                30.0,
            ),
            cggmp.RUN_KINDS,
        )
        sched = AggregatorSchedule(sid_led_by(2, tag + b"ecdsa"), EPOCH, COMMITTEE, 0.0, 5.0)
        add(
            cggmp.CggmpSigningDriver(
                sched, me, T, k.ecdsa_shares[me - 1], DIGEST, lambda _s, m: m == DIGEST
            ),
            cggmp.DRIVER_KINDS,
        )
        add(
            reshare.ReshareSession(
                tag + b"reshare",
                EPOCH,
                me,
                COMMITTEE,
                COMMITTEE,
                T,
                k.frost_public,
                k.frost_keys[me],
                30.0,
            ),
            reshare.KINDS,
        )
        return out


def run_network(
    nodes: dict[int, Node],
    initial: list[tuple[int, Outbound]],
    until: float,
    record: Callable[[int, bytes, float], None] | None = None,
) -> None:
    """Deliver messages in order, ticking every node every 0.05 s of simulated time."""
    queue = list(initial)
    now = 0.0
    while now < until:
        while queue:
            _src, o = queue.pop(0)
            if record is not None:
                record(o.to, o.data, now)
            router = nodes[o.to].router
            queue += [(o.to, x) for x in settle(router, router.receive(o.data, now), now)]
        now += 0.05
        for n in nodes.values():
            queue += [(n.me, x) for x in settle(n.router, n.router.tick(now), now)]
        if all(s.done for n in nodes.values() for s in n.sessions) and not queue:
            return


def honest_run(
    keys: Keys, tmp: Path, tag: bytes
) -> tuple[dict[int, Node], list[tuple[float, bytes]]]:
    nodes = {i: Node(i, keys, tmp, tag) for i in COMMITTEE}
    initial = [(i, o) for i, n in nodes.items() for o in n.open_all(0.0)]
    seen: list[tuple[float, bytes]] = []

    def record(to: int, data: bytes, now: float) -> None:
        if to == VICTIM:
            seen.append((now, data))

    run_network(nodes, initial, 20.0, record)
    return nodes, seen


def finished(nodes: dict[int, Node]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for s in nodes[VICTIM].sessions:
        name = type(s).__name__
        ok = (
            getattr(s, "key_package", None) is not None
            or getattr(s, "signature", None) is not None
            or getattr(s, "output", None) is not None
        )
        out[name] = out.get(name, True) and ok
    return out


class Mutator:
    """Makes a correctly signed, usually wrong, envelope from a recorded honest one."""

    def __init__(self, rng: random.Random, corpus: list[Envelope], sids: list[bytes]) -> None:
        self.rng = rng
        self.corpus = corpus
        self.sids = sids
        self.victim_commitments: dict[bytes, frost.SigningCommitments] = {}

    def observe(self, out: list[Outbound]) -> list[Outbound]:
        """Learn the victim's latest commitments, as a malicious aggregator would."""
        for o in out:
            if o.kind in (COMMIT, SHARE):
                env = Envelope.from_bytes(o.data)
                raw = unpack(env.payload, "ib" if o.kind == COMMIT else "iibb")[-1]
                assert isinstance(raw, bytes)
                self.victim_commitments[env.session_id] = frost.SigningCommitments.from_bytes(raw)
        return out

    def payload(self, data: bytes) -> bytes:
        r = self.rng
        choice = r.randrange(8)
        if choice == 0 and data:
            b = bytearray(data)
            for _ in range(r.randint(1, 4)):
                i = r.randrange(len(b))
                b[i] ^= 1 << r.randrange(8)
            return bytes(b)
        if choice == 1:
            return data[: r.randrange(len(data) + 1)]
        if choice == 2:
            return data + r.randbytes(r.randint(1, 64))
        if choice == 3:
            return r.randbytes(r.randint(0, 200))
        if choice == 4:
            fields: list[bytes | int] = []
            for _ in range(r.randint(0, 6)):
                if r.random() < 0.5:
                    fields.append(r.choice([0, 1, 2, 3, 4, 255, 65535, 65536, 2**32, 2**64 - 1]))
                else:
                    fields.append(r.choice([b"", r.randbytes(r.randint(1, 80)), data]))
            return pack(*fields)
        if choice == 5:
            return r.choice(self.corpus).payload
        if choice == 6 and len(data) > 2:
            i = r.randrange(len(data))
            return data[:i] + data[i + 1 :]
        return data

    def sign_request(self, sid: bytes, payload: bytes) -> bytes:
        """A well-formed signing request with a package the victim's commitment is in, but
        with too few, foreign or extra commitments, or another message."""
        r = self.rng
        idx, sub_id, raw = unpack(payload, "iib")
        assert isinstance(raw, bytes)
        package = frost.SigningPackage.from_bytes(raw)
        commitments = package.commitments()
        if sid in self.victim_commitments:
            commitments[VICTIM] = self.victim_commitments[sid]
        mine = {VICTIM: commitments[VICTIM]}
        choice = r.randrange(4)
        if choice == 0:
            chosen = mine  # fewer than t
        elif choice == 1:
            chosen = {**commitments, r.choice([4, 9, 300]): commitments[VICTIM]}
        elif choice == 2:
            chosen = {**mine, **{k: v for k, v in commitments.items() if r.random() < 0.5}}
        else:
            chosen = commitments
        message = package.message if r.random() < 0.7 else r.randbytes(32)
        return pack(idx, sub_id, frost.signing_package(chosen, message).to_bytes())

    def envelope(self, base: Envelope) -> Envelope:
        r = self.rng
        env = base
        if r.random() < 0.2:
            env = replace(env, kind=r.choice(ALL_KINDS))
        if r.random() < 0.2:
            env = replace(env, round=r.choice([0, 1, 2, 3, 4, 5, 7, 2**32 - 1]))
        if r.random() < 0.1:
            env = replace(env, session_id=r.choice(self.sids))
        if r.random() < 0.1:
            env = replace(env, recipient=r.choice([BROADCAST, VICTIM]))
        if r.random() < 0.3:
            sender = r.choice([2, 3])
            env = replace(env, sender=sender)
        if env.kind == SIGN and base.kind == SIGN and r.random() < 0.5:
            env = replace(env, payload=self.sign_request(env.session_id, base.payload))
        elif env.kind in PRIVATE and r.random() < 0.7:
            plain = open_sealed(IDS[VICTIM], base.payload, base.header()) or b""
            header = replace(env, payload=b"", signature=b"").header()
            env = replace(env, payload=seal(DIRECTORY[VICTIM], self.payload(plain), header))
        else:
            env = replace(env, payload=self.payload(env.payload))
        return env.sign(IDS[env.sender])


def test_router_never_raises_and_honest_state_stays_valid(tmp_path: Path, keys: Keys) -> None:
    tag = b"f:"
    honest, seen = honest_run(keys, tmp_path, tag)
    assert all(finished(honest).values()), finished(honest)
    corpus = [(at, Envelope.from_bytes(d)) for at, d in seen]
    corpus = [(at, e) for at, e in corpus if e.sender != VICTIM]
    kinds = {e.kind for _, e in corpus}
    assert kinds >= {"dkg/r1", "dkg/r2", OPEN, SIGN, COMMIT, SHARE, cggmp.BCAST, cggmp.P2P}
    assert kinds >= {cggmp.START, reshare.COMMIT, reshare.SHARE}
    sids = sorted({e.session_id for _, e in corpus})

    (tmp_path / "v").mkdir()
    rng = random.Random(int(os.environ.get("SYNOD_FUZZ_SEED", "20261130")))
    mut = Mutator(rng, [e for _, e in corpus], sids)
    cases = 0
    for rnd in range(ROUNDS):
        # A fresh victim each round, so mutations meet the sessions at every stage.
        victim = Node(VICTIM, keys, tmp_path / "v", tag, suffix=str(rnd))
        mut.victim_commitments.clear()
        sent: list[Outbound] = mut.observe(victim.open_all(0.0))
        now = 0.0
        for at, base in corpus:
            if at > now:
                now = at
                sent += mut.observe(settle(victim.router, victim.router.tick(now), now))
            for _ in range(PER_MESSAGE):
                env = mut.envelope(base)
                received = victim.router.receive(env.to_bytes(), now)  # never raises
                sent += mut.observe(settle(victim.router, received, now))
                cases += 1
            received = victim.router.receive(base.to_bytes(), now)
            sent += mut.observe(settle(victim.router, received, now))
        for _ in range(NOISE):  # random payloads, signed, for any session and kind
            sender = rng.choice([2, 3])
            e = Envelope(
                rng.choice([*sids, rng.randbytes(rng.randint(0, 40))]),
                rng.choice(ALL_KINDS),
                sender,
                rng.choice([BROADCAST, VICTIM]),
                EPOCH,
                rng.randrange(6),
                rng.randbytes(rng.randint(0, 300)),
            ).sign(IDS[sender])
            sent += settle(victim.router, victim.router.receive(e.to_bytes(), now), now)
            cases += 1
        # Every nonce the victim consumed went into a share it sent (to a peer or itself).
        assert len(victim.store.nonce_uses()) == victim.shares_signed
        # Sessions handled every error themselves; the router's safety net never fired.
        assert victim.router.counters["session_error"] == 0, victim.router.counters
    assert cases >= 5000

    # The same router still completes honest sessions of every kind.
    fresh = {i: Node(i, keys, tmp_path / "v", b"g:") for i in (2, 3)}
    victim.tag = b"g:"
    victim.sessions = []
    nodes = {VICTIM: victim, **fresh}
    initial = [(i, o) for i, n in nodes.items() for o in n.open_all(0.0)]
    run_network(nodes, initial, 20.0)
    assert all(finished(nodes).values()), finished(nodes)
