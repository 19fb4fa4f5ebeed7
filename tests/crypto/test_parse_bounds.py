"""Bounded parsing of peer input: a signing package's shape is checked before the crate
decodes a point, and an identifier outside 1..65535 is rejected instead of searched for."""

from __future__ import annotations

import json
import os

import pytest

from synod.crypto import ecdsa, encoding, frost
from synod.crypto.errors import DecodeError, ProtocolError
from tests import fixtures

SUITES = [frost.Ciphersuite.SECP256K1_TR, frost.Ciphersuite.ED25519]
HEADER = 5  # the crate's version byte and 4-byte ciphersuite id


def _setup(
    suite: frost.Ciphersuite, t: int = 2, n: int = 4
) -> tuple[dict[int, frost.KeyPackage], dict[int, frost.SigningCommitments]]:
    keys, _ = frost.local_dkg(suite, t, n)
    commitments = {i: frost.commit(k)[1] for i, k in keys.items()}
    return keys, commitments


def _wrap(suite: frost.Ciphersuite, raw: bytes) -> bytes:
    return encoding.wrap(f"frost:{suite.value}:signing_package", raw)


def _with_big_identifier(suite: frost.Ciphersuite, raw: bytes) -> bytes:
    """The package with its first identifier replaced by a scalar far above 65535."""
    first = HEADER + 1  # one varint byte of count
    ident = bytearray(raw[first : first + 32])
    top = 0 if suite is frost.Ciphersuite.SECP256K1_TR else 31  # most significant byte
    ident[top] = 0x01
    return raw[:first] + bytes(ident) + raw[first + 32 :]


@pytest.mark.parametrize("suite", SUITES)
def test_honest_package_passes(suite: frost.Ciphersuite) -> None:
    keys, c = _setup(suite)
    package = frost.signing_package({1: c[1], 3: c[3]}, b"m")
    got = frost.receive_signing_package(package.to_bytes(), keys[3], [1, 2, 3, 4])
    assert got.raw == package.raw and got.signers == (1, 3) and got.message == b"m"


@pytest.mark.parametrize("suite", SUITES)
def test_identifier_outside_u16_is_rejected(suite: frost.Ciphersuite) -> None:
    """It was searched over all 65,535 values and mapped to 0 (30 s for a 100 KB package)."""
    _, c = _setup(suite)
    raw = _with_big_identifier(suite, frost.signing_package({1: c[1], 2: c[2]}, b"m").raw)
    with pytest.raises(DecodeError):
        frost.SigningPackage.from_raw(suite, raw)


@pytest.mark.parametrize("suite", SUITES)
def test_shape_is_checked(suite: frost.Ciphersuite) -> None:
    keys, c = _setup(suite, t=2, n=4)
    me = keys[1]

    def refused(raw: bytes, committee: list[int], max_message: int = 1024) -> None:
        with pytest.raises(DecodeError):
            frost.receive_signing_package(_wrap(suite, raw), me, committee, max_message)

    two = frost.signing_package({1: c[1], 2: c[2]}, b"m").raw
    refused(two, [1, 3])  # 2 is not a committee member
    refused(two, [1])  # more commitments than the committee has members
    refused(frost.signing_package({1: c[1]}, b"m").raw, [1, 2, 3, 4])  # fewer than t
    refused(frost.signing_package({2: c[2], 3: c[3]}, b"m").raw, [1, 2, 3, 4])  # not mine
    refused(frost.signing_package({1: c[1], 2: c[2]}, b"x" * 2000).raw, [1, 2, 3, 4])
    refused(two + b"\x00", [1, 2, 3, 4])  # trailing bytes
    refused(two[:-1], [1, 2, 3, 4])  # truncated
    refused(_with_big_identifier(suite, two), [1, 2, 3, 4])
    refused(b"", [1, 2, 3, 4])
    refused(b"\x01" + two[1:], [1, 2, 3, 4])  # unknown format version
    # A count that claims more commitments than the committee, with no bytes behind it.
    refused(two[:HEADER] + b"\xff\xff\xff\xff\x0f", [1, 2, 3, 4])
    other = frost.Ciphersuite.ED25519 if suite is frost.Ciphersuite.SECP256K1_TR else None
    if other is not None:
        with pytest.raises(DecodeError):
            frost.receive_signing_package(
                encoding.wrap(f"frost:{other.value}:signing_package", two), me, [1, 2, 3, 4]
            )


def test_cggmp_message_with_oversized_integer_is_refused_before_the_crate() -> None:
    """A megabyte-long integer was handed to the crate (8 s of modular arithmetic)."""
    aux = fixtures.stored_aux(3)
    incomplete = ecdsa.local_incomplete_keygen(2, 3)
    shares = [ecdsa.KeyShare.from_parts(s, a) for s, a in zip(incomplete, aux, strict=True)]
    eid, digest = os.urandom(32), os.urandom(32)
    tag = "cggmp:secp256k1:sign_msg"
    sessions = [ecdsa.SignSession(eid, shares[i], [0, 1], digest) for i in (0, 1)]
    out = sessions[1].outgoing()
    broadcast = next(m for r, m in out if r is None)
    body = json.loads(encoding.unwrap(tag, broadcast))
    for mutate in (
        lambda b: b["Round1a"]["K"].update(value="f" * (1 << 20)),
        lambda b: b["Round1a"]["K"].update(value="f" * 4000),
        lambda b: b["Round1a"]["K"].update(value=["0"] * 5000),
        lambda b: b["Round1a"]["K"].update({f"x{i}": 0 for i in range(100)}),
    ):
        hostile = json.loads(json.dumps(body))
        mutate(hostile)
        with pytest.raises(ProtocolError) as err:
            sessions[0].receive(1, True, encoding.wrap(tag, json.dumps(hostile).encode()))
        assert err.value.culprits == (1,)
    # The session was left unchanged: the honest messages still complete the run.
    for r, m in out:
        sessions[0].receive(1, r is None, m)
    ecdsa.run_local(sessions)
    assert sessions[0].output == sessions[1].output


@pytest.mark.parametrize("suite", SUITES)
def test_dkg_and_reshare_lengths_are_checked_first(suite: frost.Ciphersuite) -> None:
    for t in (2, 3, 200):
        _, package = frost.dkg_part1(suite, 1, max(t, 3), t)
        assert frost.receive_dkg_round1_package(package.to_bytes(), suite, t) == package
        with pytest.raises(DecodeError):
            frost.receive_dkg_round1_package(package.to_bytes(), suite, t + 1)
    keys, _ = frost.local_dkg(suite, 2, 3)
    commitment, _ = frost.reshare_part1(keys[1], [1, 2], [1, 2, 3], 3)
    assert frost.receive_reshare_commitment(commitment.to_bytes(), suite, 3) == commitment
    with pytest.raises(DecodeError):
        frost.receive_reshare_commitment(commitment.to_bytes(), suite, 2)
    huge = encoding.wrap(f"frost:{suite.value}:dkg_round1_package", bytes(1 << 20))
    with pytest.raises(DecodeError):
        frost.receive_dkg_round1_package(huge, suite, 2)
