"""Memory is bounded everywhere a peer can write: the router's early buffer, its replay
memory, a session's buffer of early rounds, and the session id itself. One peer floods a
node with hundreds of thousands of correctly signed envelopes; the memory the node holds
afterwards stays under a bound computed from the caps alone."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from synod.crypto import frost
from synod.protocols.base import EARLY_BYTES_PER_PEER, EARLY_PER_PEER
from synod.protocols.dkg import ECHO, FrostDkgSession
from synod.protocols.envelope import MAX_SESSION_ID, Envelope, EnvelopeError, Identity
from synod.protocols.limits import Limits
from synod.protocols.router import EVENT_BACKLOG, Router

IDS = {i: Identity.from_seed(i, b"limits") for i in (1, 2, 3)}
DIRECTORY = {i: x.public for i, x in IDS.items()}
DKG_KINDS = {"dkg/r1", "dkg/echo", "dkg/r2", "dkg/ack", "dkg/abort"}
LIMITS = Limits(
    replay_window_s=10.0,
    replay_per_peer=4000,
    early_sessions=64,
    early_per_session=128,
    early_per_peer=512,
    early_bytes_per_peer=256 << 10,
    early_bytes_total=1 << 20,
)
ENVELOPE_OVERHEAD = 1500  # an Envelope object, its fields and list slots, generously


def victim() -> tuple[Router, FrostDkgSession]:
    r = Router(IDS[1], DIRECTORY, 1, limits=LIMITS)
    dkg = FrostDkgSession(b"dkg", 1, 1, (1, 2, 3), 2, frost.Ciphersuite.SECP256K1_TR, 1e9)
    r.register(dkg, DKG_KINDS, 0.0)
    return r, dkg


def env(sid: bytes, kind: str, rnd: int, payload: bytes, now: float) -> bytes:
    e = Envelope(sid, kind, 2, 0, 1, rnd, payload).stamped(int(now * 1000))
    return e.sign(IDS[2]).to_bytes()


def bound() -> int:
    """What the caps allow a node to hold for one peer, whatever it sends."""
    replay = LIMITS.replay_bytes_bound(1)
    early = LIMITS.early_bytes_total + LIMITS.early_per_peer * ENVELOPE_OVERHEAD
    session = EARLY_BYTES_PER_PEER + EARLY_PER_PEER * ENVELOPE_OVERHEAD
    events = EVENT_BACKLOG * ENVELOPE_OVERHEAD
    return replay + early + session + events


def test_session_ids_are_capped_at_parse() -> None:
    e = Envelope(b"x" * (MAX_SESSION_ID + 1), "k", 2, 0, 1, 0, b"")
    with pytest.raises(EnvelopeError):
        e.sign(IDS[2])
    wire = bytearray(env(b"x" * MAX_SESSION_ID, "k", 0, b"", 0.0))
    r, _ = victim()
    assert r.receive(bytes(wire), 0.0) == [] and r.counters["malformed"] == 0
    # A longer id does not even parse (the length byte says 65).
    wire[len(b"synod/envelope/v2")] = MAX_SESSION_ID + 1
    r.receive(bytes(wire), 0.0)
    assert r.counters["malformed"] == 1


def test_early_buffer_checks_its_session_cap_before_creating_an_entry() -> None:
    r, _ = victim()
    for i in range(3000):
        r.receive(env(i.to_bytes(4, "big"), "dkg/r1", 0, b"p", 0.0), 0.0)
    assert len(r._early.by_session) == LIMITS.early_sessions
    assert r.counters["buffered_early"] == LIMITS.early_sessions
    assert r.counters["early_overflow"] == 3000 - LIMITS.early_sessions


def test_closed_sessions_are_remembered_up_to_a_cap() -> None:
    r = Router(IDS[1], DIRECTORY, 1, limits=Limits(closed_sessions=100))
    sids = [b"closed" + i.to_bytes(4, "big") for i in range(250)]
    for sid in sids:
        r.close(sid)
    assert len(r._closed) == 100
    assert r.is_closed(sids[-1]) and r.is_closed(sids[150]) and not r.is_closed(sids[149])
    # a late envelope for a recently closed session is still dropped as closed
    r.receive(env(sids[-1], "x", 0, b"late", 0.0), 0.0)
    assert r.counters["closed_session"] == 1 and not r._early.by_session
    # one for a forgotten session is early: held under the early buffer's caps
    r.receive(env(sids[0], "x", 0, b"late", 0.0), 0.0)
    assert r.counters["buffered_early"] == 1 and r.counters["closed_session"] == 1
    r.close(sids[0])  # closing it again makes it the newest
    assert r.is_closed(sids[0]) and not r.is_closed(sids[150]) and len(r._closed) == 100
    assert not r._early.by_session


def test_replay_memory_is_a_bounded_window() -> None:
    r, _ = victim()
    first = env(b"other", "x", 0, b"a", 0.0)
    r.receive(first, 0.0)
    assert r.receive(first, 1.0) == [] and r.counters["replay"] == 1
    # Past the window the envelope is stale, not remembered.
    r.receive(first, 11.0)
    assert r.counters["stale"] == 1
    r.receive(env(b"other", "x", 0, b"b", 100.0), 50.0)
    assert r.counters["future_time"] == 1
    # One peer cannot push more than its share into the memory within a window.
    for i in range(LIMITS.replay_per_peer + 10):
        r.receive(env(b"other", "x", 0, i.to_bytes(4, "big"), 20.0), 20.0)
    assert r.counters["rate_limited"] >= 10
    assert len(r._seen) <= LIMITS.replay_per_peer


def test_flood_from_one_peer_keeps_memory_flat() -> None:
    rng = random.Random(9)
    r, dkg = victim()
    now = 1.0

    def flood(count: int) -> None:
        nonlocal now
        for i in range(count):
            now += 0.0005  # 2,000 envelopes a second, twice the replay share
            pick = i % 5
            if pick == 0:  # sessions this node never opens
                data = env(rng.randbytes(16), "dkg/r1", 0, rng.randbytes(600), now)
            elif pick == 1:  # later rounds of a session it runs
                data = env(b"dkg", "dkg/echo", ECHO, rng.randbytes(600), now)
            elif pick == 2:  # an unknown kind for the running session
                data = env(b"dkg", "dkg/what", 9, rng.randbytes(64), now)
            elif pick == 3:  # oversized session id
                data = bytearray(env(b"x" * 64, "k", 0, b"", now))
                data[len(b"synod/envelope/v2")] = 255
                data = bytes(data) + rng.randbytes(200)
            else:  # plain noise
                data = rng.randbytes(rng.randint(0, 400))
            r.receive(bytes(data), now)

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        flood(80_000)
        middle = tracemalloc.get_traced_memory()[0]
        flood(120_000)
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert not dkg.done
    assert r.counters["early_overflow"] > 0 and r.counters["rate_limited"] > 0
    assert r.counters["malformed"] > 0
    assert len(dkg._early) <= EARLY_PER_PEER
    assert end - base <= bound(), (end - base, bound())
    # Flat: the second, larger half of the flood added less than a tenth of the bound.
    assert end - middle <= bound() // 10, (end - middle, bound())


def test_a_signer_answers_at_most_n_minus_t_plus_one_requests_per_turn(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from synod.protocols.base import Incoming
    from synod.protocols.codec import pack, unpack
    from synod.protocols.roast import COMMIT, OPEN, SHARE, SIGN, AggregatorSchedule, RoastSigner
    from synod.state.session_store import SessionStore

    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)
    schedule = AggregatorSchedule(b"s" * 32, 1, (1, 2, 3), 0.0, 5.0)
    store = SessionStore(tmp_path / "n.db", b"k" * 32)
    msg = b"m" * 32
    signer = RoastSigner(schedule, 1, keys[1], public, lambda _s, m: m == msg, store)
    agg = schedule.candidates[0]
    (commit,) = signer.receive(Incoming(agg, OPEN, 0, pack(0, msg)), 0.1)
    assert commit.kind == COMMIT
    raw = unpack(commit.payload, "ib")[1]
    answers = 0
    for sub_id in range(1, 20):  # a hostile aggregator asks again and again
        assert isinstance(raw, bytes)
        mine = frost.SigningCommitments.from_bytes(raw)
        other = frost.commit(keys[2])[1]
        package = frost.signing_package({1: mine, 2: other}, msg)
        out = signer.receive(Incoming(agg, SIGN, sub_id, pack(0, sub_id, package.to_bytes())), 0.2)
        if not out:
            break
        assert out[0].kind == SHARE
        answers += 1
        raw = unpack(out[0].payload, "iibb")[3]
    assert answers == 3 - 2 + 1
    assert signer.events()[-1].data["reason"] == "too_many_requests"
    assert len(store.nonce_uses()) == answers
