"""The presignature pool over the simulated network: members fill their pools by proposing
presigning runs to each other, a signature comes from one presignature in one round (checked
by libsecp256k1), each presignature is used once, a pool one member no longer agrees with
falls back to interactive signing, and a hostile proposal is a counted drop."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import cast

import coincurve
import pytest

from synod.crypto import ecdsa
from synod.node import SessionStatus
from synod.node.presign_pool import PoolPolicy, PresignPool
from synod.protocols.base import Incoming
from synod.protocols.codec import pack
from synod.protocols.presign_pool import PROPOSE, PoolChannel
from synod.protocols.roast import aggregator_candidates
from synod.sim.cluster import Cluster
from synod.state.session_store import SessionStore
from tests.node.helpers import ecdsa_keyed_cluster

IDS = (1, 2, 3)
DIGEST = hashlib.sha256(b"an EOA withdrawal").digest()


def store(cluster: Cluster, i: int) -> SessionStore:
    return cast(SessionStore, cluster.nodes[i].signer.nonces)


def verifies(public_key: bytes, signature: bytes, digest: bytes) -> bool:
    sig = ecdsa.Signature.from_recoverable(signature)
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(sig.to_bytes()))
    return bool(coincurve.PublicKey(public_key).verify(der, digest, hasher=None))


@pytest.fixture(scope="module")
def keyed() -> Iterator[tuple[Cluster, dict[int, PresignPool], bytes]]:
    """A 2-of-3 CGGMP key, then every member's pool filled to its target of 2."""
    cluster, public_key = ecdsa_keyed_cluster(IDS, seed=7)
    policy = PoolPolicy(target=2, minimum=1, batch=1)
    pools = {
        i: PresignPool(
            cluster.nodes[i].signer,
            store(cluster, i),
            policy,
            lambda i=i: set(IDS) - {i},  # type: ignore[misc]
            wall_clock=lambda: cluster.net.now,
        )
        for i in IDS
    }
    for pool in pools.values():
        pool.install(cluster.net.now)
    deadline = cluster.net.now + 600.0
    while cluster.net.now < deadline and any(
        p.levels()["eth"] < 2 or p.running for p in pools.values()
    ):
        for i, pool in pools.items():
            pool.tick(cluster.net.now)
            cluster.flush(i)
        cluster.net.run(cluster.net.now + 0.25)
    assert all(p.levels()["eth"] >= 2 for p in pools.values()), [p.levels() for p in pools.values()]
    yield cluster, pools, public_key
    for i in IDS:  # release the crate's sessions here, on the thread that made them
        cluster.nodes[i].signer.close()


def _sign(cluster: Cluster, sid: bytes) -> None:
    start = cluster.net.now
    for i in IDS:
        cluster.nodes[i].signer.start_ecdsa_signing(
            "eth", sid, DIGEST, lambda s, m: m == DIGEST, start, attempt_timeout=5.0
        )
        cluster.flush(i)
    cluster.run_until(start + 60.0, [(i, sid) for i in IDS])


def test_every_presignature_is_held_by_exactly_its_signers(keyed) -> None:  # type: ignore[no-untyped-def]
    cluster, pools, _ = keyed
    held = {i: dict(store(cluster, i).fresh_presignatures("eth")) for i in IDS}
    for i in IDS:
        for pid, indices in held[i].items():
            signers = {IDS[x] for x in indices}
            assert i in signers and len(signers) == 2
            assert all(held[s].get(pid) == indices for s in signers)  # same run, same signers
    counters = [p.counters for p in pools.values()]
    assert all(c["failed"] == 0 for c in counters), counters
    for i in IDS:  # sealed at rest: no row holds the presignature's plaintext encoding
        rows = [r for r in store(cluster, i).raw_presignature_rows() if r[0] in held[i]]
        assert rows and all(r[1] is not None and b"presignature" not in r[1] for r in rows)


def test_signing_takes_one_presignature_once(keyed) -> None:  # type: ignore[no-untyped-def]
    cluster, _, public_key = keyed
    before = {i: set(store(cluster, i).fresh_presignature_ids("eth")) for i in IDS}
    sid = hashlib.sha256(b"pooled signing").digest()
    _sign(cluster, sid)
    results = [cluster.nodes[i].signer.result(sid) for i in IDS]
    assert all(r is not None and r.status is SessionStatus.DONE for r in results), results
    first = results[0]
    assert first is not None and first.signature is not None
    assert verifies(public_key, first.signature, DIGEST)
    signed = [e for i in IDS for e in cluster.nodes[i].events if e.name == "signed"]
    assert signed and all(e.data.get("presigned") for e in signed)
    after = {i: set(store(cluster, i).fresh_presignature_ids("eth")) for i in IDS}
    used = set[str]().union(*before.values()) - set[str]().union(*after.values())
    assert len(used) == 1  # one presignature, gone from every signer that held it
    (pid,) = used
    assert sum(pid in before[i] for i in IDS) == 2
    assert all(store(cluster, i).take_presignature(pid) is None for i in IDS)


def _leading(leader: int, label: bytes) -> bytes:
    """A signing session id whose first attempt `leader` leads."""
    for n in range(1000):
        sid = hashlib.sha256(label + n.to_bytes(4, "big")).digest()
        if aggregator_candidates(sid, 1, IDS)[0] == leader:
            return sid
    raise AssertionError("no session id found")


def test_a_request_naming_the_wrong_signers_leaves_the_presignature(keyed, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cluster, pools, public_key = keyed
    # a presignature of `leader` and `victim`: the leader names it with the third member
    # in place of itself, so the victim must refuse before taking (erasing) it
    leader = IDS[0]
    pid, indices = store(cluster, leader).fresh_presignatures("eth")[0]
    signers = tuple(IDS[x] for x in indices)
    (victim,) = set(signers) - {leader}
    (third,) = set(IDS) - set(signers)
    wrong = tuple(sorted((victim, third)))
    monkeypatch.setattr(pools[leader], "choose", lambda key_id: (pid, wrong))
    for i in IDS:
        cluster.nodes[i].events.clear()
    _sign(cluster, _leading(leader, b"hostile leader"))
    refused = [e.data["reason"] for e in cluster.nodes[victim].events if e.name == "refused"]
    assert refused == ["presignature_signers"]
    assert pid in store(cluster, victim).fresh_presignature_ids("eth")  # still in the pool
    signed = [e for i in IDS for e in cluster.nodes[i].events if e.name == "signed"]
    assert signed and not any(e.data.get("presigned") for e in signed)  # interactively

    # named with its own signers, the same presignature then signs
    monkeypatch.setattr(pools[leader], "choose", lambda key_id: (pid, signers))
    for i in IDS:
        cluster.nodes[i].events.clear()
    sid = _leading(leader, b"honest leader")
    _sign(cluster, sid)
    result = cluster.nodes[victim].signer.result(sid)
    assert result is not None and result.status is SessionStatus.DONE and result.signature
    assert verifies(public_key, result.signature, DIGEST)
    signed = [e for i in IDS for e in cluster.nodes[i].events if e.name == "signed"]
    assert signed and all(e.data.get("presigned") for e in signed)
    assert all(pid not in store(cluster, i).fresh_presignature_ids("eth") for i in signers)


def test_a_pool_a_signer_no_longer_holds_falls_back_to_interactive(keyed) -> None:  # type: ignore[no-untyped-def]
    cluster, pools, public_key = keyed
    for pool in pools.values():
        pool.policy = PoolPolicy(target=0, minimum=0)  # no refills during this test
    sid = hashlib.sha256(b"fallback signing").digest()
    # the first attempt's leader keeps its pool, everyone else forgets theirs: the leader
    # names a presignature its co-signer no longer holds
    leader = aggregator_candidates(sid, 1, IDS)[0]
    assert store(cluster, leader).fresh_presignature_ids("eth")
    for i in IDS:
        if i != leader:
            store(cluster, i).discard_presignatures("eth")
    for i in IDS:
        cluster.nodes[i].events.clear()
    _sign(cluster, sid)
    results = [cluster.nodes[i].signer.result(sid) for i in IDS]
    done = [r for r in results if r is not None and r.status is SessionStatus.DONE]
    assert done and done[0].signature is not None
    assert verifies(public_key, done[0].signature, DIGEST)
    events = [e for i in IDS for e in cluster.nodes[i].events]
    assert any(e.name == "refused" and e.data["reason"] == "no_presignature" for e in events)
    signed = [e for e in events if e.name == "signed"]
    assert signed and not any(e.data.get("presigned") for e in signed)  # interactively


def test_presignatures_past_their_lifetime_are_erased(keyed) -> None:  # type: ignore[no-untyped-def]
    cluster, pools, _ = keyed
    member = 1
    pool = pools[member]
    pool.policy = PoolPolicy(target=1, minimum=1, ttl_s=60.0)  # one more, if it has none
    deadline = cluster.net.now + 300.0
    while cluster.net.now < deadline and (pool.levels()["eth"] < 1 or pool.running):
        for i, p in pools.items():
            p.tick(cluster.net.now)
            cluster.flush(i)
        cluster.net.run(cluster.net.now + 0.25)
    pool.policy = PoolPolicy(target=0, minimum=0, ttl_s=60.0)
    pool.tick(cluster.net.now)  # within the lifetime: nothing goes
    kept = pool.levels()["eth"]
    assert kept > 0
    pool.wall_clock = lambda: time.time() + 61.0
    pool._next_prune = pool._next_tick = 0.0
    pool.tick(cluster.net.now)
    assert pool.levels()["eth"] == 0 and pool.counters["pruned"] >= kept
    rows = store(cluster, member).raw_presignature_rows()
    assert rows and all(sealed is None for _, sealed in rows)  # no ciphertext left


def test_hostile_proposals_are_counted_drops() -> None:
    channel = PoolChannel(1, 2, (1, 2, 3))
    sid = b"\x05" * 32
    bad = [
        Incoming(1, PROPOSE, 0, b"\x00garbage"),
        Incoming(1, PROPOSE, 0, pack(b"eth", b"short", (1).to_bytes(4, "big"))),
        Incoming(1, PROPOSE, 0, pack(b"eth", sid, b"\x00\x00\x00\x03\x00\x00\x00\x02")),  # unsorted
        Incoming(1, PROPOSE, 0, pack(b"eth", sid, b"\x00\x00\x00\x02\x00\x00\x00\x03")),  # not its
        Incoming(1, PROPOSE, 0, pack(b"eth", sid, b"\x00\x00\x00\x01\x00\x00\x00\x03")),  # not me
        Incoming(9, PROPOSE, 0, pack(b"eth", sid, b"\x00\x00\x00\x02\x00\x00\x00\x09")),  # outsider
    ]
    for msg in bad:
        assert channel.receive(msg, 0.0) == []
    events = channel.events()
    assert [e.name for e in events] == ["dropped"] * len(bad)
    good = Incoming(1, PROPOSE, 0, pack(b"eth", sid, b"\x00\x00\x00\x01\x00\x00\x00\x02"))
    channel.receive(good, 0.0)
    (event,) = channel.events()
    assert event.name == "proposed" and event.data["signers"] == (1, 2)


def test_pool_levels_are_in_the_members_metrics(keyed) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client import generate_latest

    from synod.node.metrics import node_registry
    from synod.node.process import Status

    _, pools, _ = keyed
    levels = pools[1].levels()
    status = Status(1, 1, "ready", "127.0.0.1:1", {}, {}, {}, presignatures=levels)
    text = generate_latest(node_registry(lambda: status)).decode()
    assert f'synod_presignatures{{key_id="eth"}} {float(levels["eth"])}' in text
