"""Restarts cannot be turned against honest members: a restarted aggregator's envelopes are
new (a per-send nonce), its sub-session ids never repeat an earlier incarnation's, and a
node's replay memory survives its own restart within the window."""

from __future__ import annotations

from pathlib import Path

import pytest

from synod.crypto import frost
from synod.protocols.envelope import Identity
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

COMMITTEE = (1, 2, 3)
IDS = {i: Identity.from_seed(i, b"restart") for i in COMMITTEE}
DIRECTORY = {i: x.public for i, x in IDS.items()}
MSG = b"\x07" * 32
SID = next(
    b"restart" + bytes([i])
    for i in range(256)
    if aggregator_candidates(b"restart" + bytes([i]), 1, COMMITTEE)[0] == 1
)
SCHEDULE = AggregatorSchedule(SID, 1, COMMITTEE, 0.0, 5.0)


@pytest.fixture(scope="module")
def keys() -> tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage]:
    return frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)


Keys = tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage]


def signer_node(
    tmp: Path, keys: Keys, me: int, message: bytes | None, persist: bool = False
) -> tuple[Router, RoastSigner]:
    store = SessionStore(tmp / f"{me}.db", b"k" * 32)
    if persist:
        router = Router(IDS[me], DIRECTORY, 1, seen_store=store)
    else:
        router = Router(IDS[me], DIRECTORY, 1)
    signer = RoastSigner(
        SCHEDULE, me, keys[0][me], keys[1], lambda _s, m: m == MSG, store, message=message
    )
    return router, signer


def aggregator(keys, now: float) -> tuple[Router, RoastCoordinator, list[Outbound]]:  # type: ignore[no-untyped-def]
    router = Router(IDS[1], DIRECTORY, 1)
    coord = RoastCoordinator(SCHEDULE, 0, 1, 2, keys[1], MSG)
    return router, coord, router.register(coord, {COMMIT, SHARE}, now)


def to(node: int, out: list[Outbound], kind: str) -> list[bytes]:
    return [o.data for o in out if o.to == node and o.kind == kind]


def test_restarted_aggregators_open_is_accepted(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    r2, s2 = signer_node(tmp_path, keys, 2, None)
    r2.register(s2, {OPEN, SIGN, DONE}, 0.0)
    _, _, out = aggregator(keys, 0.0)
    (open1,) = to(2, out, OPEN)
    assert to(1, r2.receive(open1, 0.5), COMMIT)
    # The aggregator restarts within its turn and opens again: a new envelope, answered.
    _, _, out = aggregator(keys, 0.5)
    (open2,) = to(2, out, OPEN)
    assert open2 != open1
    assert to(1, r2.receive(open2, 0.6), COMMIT)
    assert r2.counters["replay"] == 0


def test_late_share_from_before_a_restart_does_not_exclude_its_sender(
    tmp_path: Path,
    keys,  # type: ignore[no-untyped-def]
) -> None:
    nodes = {i: signer_node(tmp_path, keys, i, MSG) for i in (2, 3)}
    r1, c1, _ = aggregator(keys, 0.0)
    commits = {
        i: to(1, r.register(s, {OPEN, SIGN, DONE}, 0.0), COMMIT) for i, (r, s) in nodes.items()
    }
    signs: list[Outbound] = []
    for data in commits[2] + commits[3]:
        signs += r1.receive(data, 0.1)
    (sign_to_2,) = to(2, signs, SIGN)
    (late_share,) = to(1, nodes[2][0].receive(sign_to_2, 0.2), SHARE)
    # The aggregator restarts before the share arrives and opens its turn again.
    r1b, c1b, out = aggregator(keys, 0.3)
    signs = []
    for i, (r, _) in nodes.items():
        for data in to(1, r.receive(to(i, out, OPEN)[0], 0.4), COMMIT):
            signs += r1b.receive(data, 0.5)
    assert c1b.subs and c1.subs
    r1b.receive(late_share, 0.6)  # the old incarnation's share arrives late
    assert 2 not in c1b.malicious
    assert not [e for _, e in r1b.events if e.name == "culprit"]
    assert not set(c1b.subs) & set(c1.subs)  # sub-session ids of two incarnations differ
    # The new sub-session still completes with the same, honest signers.
    for i, (r, _) in nodes.items():
        for data in to(i, signs, SIGN):
            for share in to(1, r.receive(data, 0.7), SHARE):
                r1b.receive(share, 0.8)
    assert c1b.signature is not None


def test_replay_after_a_restart_is_dropped(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    r2, s2 = signer_node(tmp_path, keys, 2, None, persist=True)
    r2.register(s2, {OPEN, SIGN, DONE}, 0.0)
    _, _, out = aggregator(keys, 0.0)
    (open1,) = to(2, out, OPEN)
    assert to(1, r2.receive(open1, 0.5), COMMIT)
    s2.store.close()
    # Node 2 restarts: a new router over the same store remembers what it accepted.
    r2b, s2b = signer_node(tmp_path, keys, 2, None, persist=True)
    r2b.register(s2b, {OPEN, SIGN, DONE}, 1.0)
    assert r2b.receive(open1, 1.0) == []
    assert r2b.counters["replay"] == 1
