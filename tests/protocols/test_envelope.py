"""Envelopes: every field is signed, malformed bytes are refused, sealed payloads stay private."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synod.protocols.envelope import BROADCAST, Envelope, EnvelopeError, Identity, open_sealed, seal

ALICE = Identity.from_seed(1, b"test")
BOB = Identity.from_seed(2, b"test")
EVE = Identity.from_seed(3, b"test")


def sample() -> Envelope:
    return Envelope(b"session-1", "roast/commit", 1, 2, 7, 3, b"payload").sign(ALICE)


def test_round_trip_and_verify() -> None:
    env = sample()
    back = Envelope.from_bytes(env.to_bytes())
    assert back == env
    assert back.verify(ALICE.public)
    assert not back.verify(BOB.public)


@pytest.mark.parametrize(
    "change",
    [
        {"session_id": b"session-2"},
        {"kind": "roast/share"},
        {"recipient": BROADCAST},
        {"epoch": 6},
        {"round": 4},
        {"payload": b"payloaD"},
    ],
)
def test_every_field_is_signed(change: dict[str, object]) -> None:
    assert not replace(sample(), **change).verify(ALICE.public)  # type: ignore[arg-type]


def test_forgery_with_another_key_fails() -> None:
    forged = Envelope(b"session-1", "roast/commit", 1, 2, 7, 3, b"x").sign(
        EVE.__class__(1, EVE.sign_secret, EVE.seal_secret)
    )
    assert not forged.verify(ALICE.public)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        Envelope.from_bytes(data)


def test_truncations_are_refused() -> None:
    wire = sample().to_bytes()
    for cut in range(len(wire)):
        with pytest.raises(EnvelopeError):
            Envelope.from_bytes(wire[:cut])


def test_sealed_payload_only_opens_for_its_recipient_and_header() -> None:
    header = sample().header()
    sealed = seal(BOB.public, b"dkg share", header)
    assert b"dkg share" not in sealed
    assert open_sealed(BOB, sealed, header) == b"dkg share"
    assert open_sealed(EVE, sealed, header) is None
    assert open_sealed(BOB, sealed, header + b"x") is None
    assert open_sealed(BOB, sealed[:-1] + bytes([sealed[-1] ^ 1]), header) is None
    assert open_sealed(BOB, b"short", header) is None


def test_every_send_is_distinct_and_the_version_is_strict() -> None:
    a = Envelope(b"s", "roast/open", 1, 0, 7, 0, b"same").sign(ALICE)
    b = Envelope(b"s", "roast/open", 1, 0, 7, 0, b"same").sign(ALICE)
    assert a.nonce != b.nonce and a.digest() != b.digest() and a.to_bytes() != b.to_bytes()
    assert not replace(a, nonce=b.nonce).verify(ALICE.public)
    assert not replace(a, sent_ms=1).verify(ALICE.public)
    old = b"synod/envelope/v1" + a.to_bytes()[len(b"synod/envelope/v2") :]
    with pytest.raises(EnvelopeError):
        Envelope.from_bytes(old)
    with pytest.raises(EnvelopeError):
        Envelope.from_bytes(a.to_bytes() + b"\x00")
