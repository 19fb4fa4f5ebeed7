"""The ROAST signer and coordinator as plain state machines, without a network."""

from __future__ import annotations

from pathlib import Path

import pytest

from synod.crypto import frost
from synod.protocols.base import Incoming
from synod.protocols.codec import pack, unpack
from synod.protocols.roast import (
    COMMIT,
    OPEN,
    SIGN,
    AggregatorSchedule,
    RoastCoordinator,
    RoastSigner,
    aggregator_candidates,
)
from synod.state.session_store import SessionStore

SID = b"\x01" * 32
MSG = b"\x02" * 32


@pytest.fixture(scope="module")
def keys() -> tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage]:
    return frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)


def signer(tmp_path: Path, keys, me: int = 1, validator=lambda s, m: m == MSG) -> RoastSigner:  # type: ignore[no-untyped-def]
    schedule = AggregatorSchedule(SID, 1, (1, 2, 3), 0.0, 5.0)
    store = SessionStore(tmp_path / f"{me}.db", b"k" * 32)
    return RoastSigner(schedule, me, keys[0][me], keys[1], validator, store)


def test_candidates_are_a_deterministic_permutation() -> None:
    committee = tuple(range(1, 101))
    a = aggregator_candidates(SID, 7, committee)
    assert sorted(a) == list(committee)
    assert a == aggregator_candidates(SID, 7, committee)
    assert a != aggregator_candidates(SID, 8, committee)
    assert a != aggregator_candidates(b"\x03" * 32, 7, committee)
    s = AggregatorSchedule(SID, 7, committee, 100.0, 5.0)
    assert [s.index(t) for t in (99.0, 100.0, 104.9, 105.0, 131.0)] == [0, 0, 0, 1, 6]
    assert s.active(106.0) == a[1]


def test_signer_answers_only_the_current_aggregator(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    s = signer(tmp_path, keys)
    cands = s.schedule.candidates
    # The aggregator of turn 1 speaks during turn 0: stale/early, dropped.
    out = s.receive(Incoming(cands[1], OPEN, 0, pack(1, MSG)), now=1.0)
    assert out == [] and s.events()[-1].data["reason"] == "stale_aggregator"
    # A node that is not the aggregator claims turn 0.
    out = s.receive(Incoming(cands[1], OPEN, 0, pack(0, MSG)), now=1.0)
    assert out == []
    # The right one, at the right time.
    out = s.receive(Incoming(cands[0], OPEN, 0, pack(0, MSG)), now=1.0)
    assert len(out) == 1 and out[0].kind == COMMIT and out[0].to == cands[0]
    # Turn 0 is over at t=5: the same aggregator is now stale.
    assert s.receive(Incoming(cands[0], SIGN, 1, pack(0, 1, b"x")), now=6.0) == []
    assert s.events()[-1].data["reason"] == "stale_aggregator"


def test_template_mismatch_refused_before_any_nonce(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    s = signer(tmp_path, keys)
    agg = s.schedule.candidates[0]
    assert s.receive(Incoming(agg, OPEN, 0, pack(0, b"pay the attacker")), now=0.0) == []
    assert s.events()[-1].data["reason"] == "template_mismatch"
    assert s.store.raw_nonce_rows() == []


def test_signing_request_for_another_message_refused(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    s = signer(tmp_path, keys)
    agg = s.schedule.candidates[0]
    (commit,) = s.receive(Incoming(agg, OPEN, 0, pack(0, MSG)), now=0.0)
    _, raw = unpack(commit.payload, "ib")
    assert isinstance(raw, bytes)
    mine = frost.SigningCommitments.from_bytes(raw)
    _, other = frost.commit(keys[0][2])
    package = frost.signing_package({1: mine, 2: other}, b"another message")
    assert s.receive(Incoming(agg, SIGN, 1, pack(0, 1, package.to_bytes())), now=0.1) == []
    assert s.events()[-1].data["reason"] == "template_mismatch"
    # The nonce is still unused, and a correct request is answered exactly once.
    good = frost.signing_package({1: mine, 2: other}, MSG)
    out = s.receive(Incoming(agg, SIGN, 2, pack(0, 2, good.to_bytes())), now=0.2)
    assert len(out) == 1
    again = s.receive(Incoming(agg, SIGN, 2, pack(0, 2, good.to_bytes())), now=0.3)
    assert again == []
    assert len(s.store.nonce_uses()) == 1


def test_coordinator_excludes_a_malformed_commitment(keys) -> None:  # type: ignore[no-untyped-def]
    schedule = AggregatorSchedule(SID, 1, (1, 2, 3), 0.0, 5.0)
    me = schedule.candidates[0]
    c = RoastCoordinator(schedule, 0, me, 2, keys[1], MSG)
    c.receive(Incoming(2, COMMIT, 0, pack(0, b"not a commitment")), now=0.0)
    assert 2 in c.malicious
    with pytest.raises(ValueError):
        RoastCoordinator(schedule, 0, schedule.candidates[1], 2, keys[1], MSG)


def test_outsiders_have_no_say(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    """A node the router knows but that is not in this committee: its junk cannot get members
    of the committee excluded or the session failed, and its valid commitment is not used."""
    schedule = AggregatorSchedule(SID, 1, (1, 2, 3), 0.0, 5.0)
    me = schedule.candidates[0]
    c = RoastCoordinator(schedule, 0, me, 2, keys[1], MSG)
    outsider_commitment = frost.commit(keys[0][1])[1].to_bytes()
    for outsider in (8, 9):
        assert c.receive(Incoming(outsider, COMMIT, 0, pack(0, b"junk")), now=0.0) == []
    assert c.receive(Incoming(9, COMMIT, 0, pack(0, outsider_commitment)), now=0.0) == []
    assert not c.malicious and not c.ready and not c.done
    assert {e.data["reason"] for e in c.events() if e.name == "dropped"} == {"not_a_participant"}

    s = signer(tmp_path, keys)
    assert s.receive(Incoming(9, OPEN, 0, pack(0, MSG)), now=1.0) == []
    assert s.events()[-1].data["reason"] == "not_a_participant"
    assert s.store.raw_nonce_rows() == []
