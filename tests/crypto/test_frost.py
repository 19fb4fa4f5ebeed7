"""FROST through synod.crypto, checked by verifiers nobody here wrote.

BIP340: libsecp256k1 (coincurve). Ed25519: libsodium (PyNaCl) and OpenSSL
(`cryptography`). Published vectors: RFC 9591 FROST(Ed25519, SHA-512) and BIP340.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import coincurve
import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synod.crypto import frost
from synod.crypto.errors import (
    DecodeError,
    InvalidPackageError,
    InvalidParametersError,
    InvalidShareError,
    InvalidSignatureError,
)
from synod.crypto.frost import KEY_PATH, Ciphersuite, TaprootTweak

DATA = Path(__file__).parent.parent / "data"
TR = Ciphersuite.SECP256K1_TR
ED = Ciphersuite.ED25519


def independent_verify(suite: Ciphersuite, public_key: bytes, message: bytes, sig: bytes) -> bool:
    """Verify with libraries outside synod; all of them must agree."""
    if suite is TR:
        return bool(coincurve.PublicKeyXOnly(public_key).verify(sig, message))
    try:
        nacl.signing.VerifyKey(public_key).verify(message, sig)
        nacl_ok = True
    except Exception:
        nacl_ok = False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, message)
        ossl_ok = True
    except Exception:
        ossl_ok = False
    assert nacl_ok == ossl_ok, "libsodium and OpenSSL disagree"
    return nacl_ok


def tweaked_key_independently(internal_x: bytes, merkle_root: bytes | None) -> bytes:
    """BIP341 taproot_tweak_pubkey computed with libsecp256k1 arithmetic."""
    tag = hashlib.sha256(b"TapTweak").digest()
    t = hashlib.sha256(tag + tag + internal_x + (merkle_root or b"")).digest()
    point = coincurve.PublicKey(b"\x02" + internal_x).add(t)
    return point.format()[1:]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    suite=st.sampled_from([TR, ED]),
    n=st.integers(2, 10),
    data=st.data(),
    message=st.binary(min_size=0, max_size=80),
)
def test_dkg_then_random_subset_signs(
    suite: Ciphersuite, n: int, data: st.DataObject, message: bytes
) -> None:
    t = data.draw(st.integers(2, n), label="t")
    signers = data.draw(
        st.lists(st.integers(1, n), min_size=t, max_size=t, unique=True), label="signers"
    )
    keys, public = frost.local_dkg(suite, t, n)
    assert sorted(keys) == list(range(1, n + 1))
    assert all(k.min_signers == t for k in keys.values())
    assert public.min_signers == t

    sig = frost.local_sign(keys, public, message, signers)
    frost.verify(suite, public.group_public_key(), message, sig)
    assert independent_verify(suite, public.group_public_key(), message, sig.raw)
    assert not independent_verify(suite, public.group_public_key(), message + b"!", sig.raw)


@pytest.mark.parametrize("merkle_root", [None, bytes(range(32))])
def test_taproot_tweak_verifies_under_output_key(merkle_root: bytes | None) -> None:
    keys, public = frost.local_dkg(TR, 3, 5)
    tweak = TaprootTweak(merkle_root)
    msg = hashlib.sha256(b"sighash").digest()
    sig = frost.local_sign(keys, public, msg, [2, 4, 5], tweak)
    internal = public.group_public_key()
    output = public.group_public_key(tweak)
    assert output == tweaked_key_independently(internal, merkle_root)
    assert independent_verify(TR, output, msg, sig.raw)
    assert not independent_verify(TR, internal, msg, sig.raw)
    # Per-share verification under the same tweak.
    r1 = {i: frost.commit(keys[i]) for i in (1, 2, 3)}
    package = frost.signing_package({i: c for i, (_, c) in r1.items()}, msg)
    share = frost.sign(package, r1[1][0], keys[1], tweak)
    frost.verify_share(1, package, share, public, tweak)
    with pytest.raises(InvalidShareError):
        frost.verify_share(1, package, share, public)
    # An untweaked signature does not verify under the output key.
    plain = frost.local_sign(keys, public, msg, [1, 2, 3])
    assert not independent_verify(TR, output, msg, plain.raw)


def test_tweak_rejected_for_ed25519() -> None:
    keys, public = frost.local_dkg(ED, 2, 3)
    with pytest.raises(InvalidParametersError):
        frost.local_sign(keys, public, b"m", [1, 2], KEY_PATH)


def test_rfc9591_ed25519_vector() -> None:
    from synod.crypto.import_export import export_signing_key, import_shares

    v = json.loads((DATA / "rfc9591_ed25519_vector.json").read_text())
    shares = {int(i): bytes.fromhex(s) for i, s in v["shares"].items()}
    keys, public = import_shares(ED, shares, v["min_signers"])
    assert public.group_public_key() == bytes.fromhex(v["group_public_key"])
    assert export_signing_key([keys[1], keys[3]]) == bytes.fromhex(v["group_secret_key"])

    message = bytes.fromhex(v["message"])
    commitments = {
        int(i): frost.SigningCommitments.from_points(
            ED, bytes.fromhex(c["hiding"]), bytes.fromhex(c["binding"])
        )
        for i, c in v["commitments"].items()
    }
    package = frost.signing_package(commitments, message)
    sig_shares = {
        int(i): frost.SignatureShare.from_scalar(ED, bytes.fromhex(z))
        for i, z in v["sig_shares"].items()
    }
    # aggregate() checks every share against its verifying share, binding factor and challenge.
    sig = frost.aggregate(package, sig_shares, public)
    assert sig.raw.hex() == v["signature"]
    frost.verify(ED, public.group_public_key(), message, sig)
    assert independent_verify(ED, public.group_public_key(), message, sig.raw)
    # A vector share altered by one bit is caught and attributed.
    bad = bytearray(bytes.fromhex(v["sig_shares"]["3"]))
    bad[0] ^= 1
    sig_shares[3] = frost.SignatureShare.from_scalar(ED, bytes(bad))
    with pytest.raises(InvalidShareError) as err:
        frost.aggregate(package, sig_shares, public)
    assert err.value.culprits == (3,)


def bip340_vectors() -> list[dict[str, str]]:
    with (DATA / "bip340_test_vectors.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("vector", bip340_vectors(), ids=lambda v: f"bip340-{v['index']}")
def test_bip340_vectors_through_verify(vector: dict[str, str]) -> None:
    key = bytes.fromhex(vector["public key"])
    msg = bytes.fromhex(vector["message"])
    sig = bytes.fromhex(vector["signature"])
    expected = vector["verification result"] == "TRUE"
    try:
        frost.verify(TR, key, msg, sig)
        ok = True
    except (InvalidSignatureError, DecodeError):
        ok = False
    assert ok == expected, vector["comment"]
    # The vectors themselves are checked against libsecp256k1, so stale data cannot pass silently.
    try:
        reference = bool(coincurve.PublicKeyXOnly(key).verify(sig, msg))
    except ValueError:
        reference = False
    assert reference == expected


def _dkg_rounds(suite: Ciphersuite, t: int, n: int):  # type: ignore[no-untyped-def]
    ids = range(1, n + 1)
    r1 = {i: frost.dkg_part1(suite, i, n, t) for i in ids}
    return ids, r1


@pytest.mark.parametrize("suite", [TR, ED])
def test_dkg_names_sender_of_bad_round1_package(suite: Ciphersuite) -> None:
    _ids, r1 = _dkg_rounds(suite, 2, 3)
    # Participant 2 sends participant 1 a round-1 package belonging to someone else's run:
    # its proof of knowledge is bound to another identifier, so it must fail and name 2.
    _, foreign = frost.dkg_part1(suite, 3, 3, 2)
    received = {2: foreign, 3: r1[3][1]}
    with pytest.raises(InvalidPackageError) as err:
        frost.dkg_part2(r1[1][0], received)
    assert err.value.culprits == (2,)


@pytest.mark.parametrize("suite", [TR, ED])
def test_dkg_names_sender_of_bad_secret_share(suite: Ciphersuite) -> None:
    ids, r1 = _dkg_rounds(suite, 2, 3)
    r2 = {i: frost.dkg_part2(r1[i][0], {j: r1[j][1] for j in ids if j != i}) for i in ids}
    # Participant 3 sends participant 1 the share it computed for participant 2.
    received = {2: r2[2][1][1], 3: r2[3][1][2]}
    with pytest.raises(InvalidPackageError) as err:
        frost.dkg_part3(r2[1][0], {j: r1[j][1] for j in (2, 3)}, received)
    assert err.value.culprits == (3,)


@pytest.mark.parametrize("suite", [TR, ED])
def test_aggregate_names_every_bad_share(suite: Ciphersuite) -> None:
    keys, public = frost.local_dkg(suite, 3, 5)
    chosen = [1, 2, 4, 5]
    r1 = {i: frost.commit(keys[i]) for i in chosen}
    package = frost.signing_package({i: c for i, (_, c) in r1.items()}, b"pay 1 BTC")
    shares = {i: frost.sign(package, r1[i][0], keys[i]) for i in chosen}
    # 2 answers with 4's share; 5 signs a different message with its own nonces.
    shares[2] = shares[4]
    other = frost.signing_package({i: c for i, (_, c) in r1.items()}, b"pay 9 BTC")
    shares[5] = frost.sign(other, r1[5][0], keys[5])
    with pytest.raises(InvalidShareError) as err:
        frost.aggregate(package, shares, public)
    assert err.value.culprits == (2, 5)
    # The same verdicts one share at a time, as a ROAST coordinator checks them on arrival.
    for i in chosen:
        if i in (2, 5):
            with pytest.raises(InvalidShareError) as one:
                frost.verify_share(i, package, shares[i], public)
            assert one.value.culprits == (i,)
        else:
            frost.verify_share(i, package, shares[i], public)


@pytest.mark.parametrize("suite", [TR, ED])
def test_refresh_keeps_group_key_and_retires_old_shares(suite: Ciphersuite) -> None:
    t, n = 3, 4
    keys, public = frost.local_dkg(suite, t, n)
    ids = list(keys)
    r1 = {i: frost.refresh_part1(suite, i, n, t) for i in ids}
    r2 = {i: frost.refresh_part2(r1[i][0], {j: r1[j][1] for j in ids if j != i}) for i in ids}
    new_keys, new_public = {}, None
    for i in ids:
        new_keys[i], new_public = frost.refresh_part3(
            r2[i][0],
            {j: r1[j][1] for j in ids if j != i},
            {j: r2[j][1][i] for j in ids if j != i},
            public,
            keys[i],
        )
    assert new_public is not None
    assert new_public.verifying_key() == public.verifying_key()
    assert all(new_keys[i].raw != keys[i].raw for i in ids)
    msg = b"after refresh"
    sig = frost.local_sign(new_keys, new_public, msg, [1, 2, 4])
    assert independent_verify(suite, public.group_public_key(), msg, sig.raw)
    _assert_old_and_new_do_not_combine(keys, new_keys, new_public, old_ids=[1], new_ids=[2, 4])


def _assert_old_and_new_do_not_combine(old, new, new_public, old_ids, new_ids) -> None:  # type: ignore[no-untyped-def]
    mixed = {**{i: old[i] for i in old_ids}, **{i: new[i] for i in new_ids}}
    with pytest.raises(InvalidShareError) as err:
        frost.local_sign(mixed, new_public, b"mix", [*old_ids, *new_ids])
    assert set(err.value.culprits) == set(old_ids)


def _reshare(keys, public, old_signers, new_ids, new_t):  # type: ignore[no-untyped-def]
    contributions = {
        i: frost.reshare_part1(keys[i], old_signers, new_ids, new_t) for i in old_signers
    }
    result = {}
    for j in new_ids:
        commitments = {i: c for i, (c, _) in contributions.items()}
        shares = {i: s[j] for i, (_, s) in contributions.items()}
        result[j] = frost.reshare_part2(j, new_ids, new_t, public, commitments, shares)
    return contributions, result


@pytest.mark.parametrize("suite", [TR, ED])
def test_reshare_to_new_committee_and_threshold(suite: Ciphersuite) -> None:
    keys, public = frost.local_dkg(suite, 2, 3)
    new_ids = [3, 4, 5, 6, 7]
    _, result = _reshare(keys, public, [1, 3], new_ids, 4)
    new_keys = {j: kp for j, (kp, _) in result.items()}
    publics = {pkp.raw for _, pkp in result.values()}
    assert len(publics) == 1
    new_public = next(iter(result.values()))[1]
    assert new_public.verifying_key() == public.verifying_key()
    assert new_public.min_signers == 4
    assert new_public.identifiers == tuple(new_ids)
    msg = b"new committee"
    for signers in ([3, 4, 5, 6], [4, 5, 6, 7]):
        sig = frost.local_sign(new_keys, new_public, msg, signers)
        assert independent_verify(suite, public.group_public_key(), msg, sig.raw)
    # Old share 3 and new shares cannot be combined.
    with pytest.raises(InvalidShareError) as err:
        frost.local_sign({**new_keys, 3: keys[3]}, new_public, msg, [3, 4, 5, 6])
    assert err.value.culprits == (3,)
    # Three new shares are below the new threshold.
    with pytest.raises(InvalidParametersError):
        frost.local_sign(new_keys, new_public, msg, [4, 5, 6])


@pytest.mark.parametrize("suite", [TR, ED])
def test_reshare_names_old_signer_with_bad_subshare_or_commitment(suite: Ciphersuite) -> None:
    keys, public = frost.local_dkg(suite, 2, 3)
    new_ids = [1, 2, 3]
    contributions = {i: frost.reshare_part1(keys[i], [1, 2], new_ids, 2) for i in (1, 2)}
    commitments = {i: c for i, (c, _) in contributions.items()}
    # Old signer 2 sends new signer 1 the sub-share meant for new signer 3.
    shares = {1: contributions[1][1][1], 2: contributions[2][1][3]}
    with pytest.raises(InvalidPackageError) as err:
        frost.reshare_part2(1, new_ids, 2, public, commitments, shares)
    assert err.value.culprits == (2,)
    # Old signer 1 sub-shares a value unrelated to its old share (honest split of a fresh key).
    fake_keys, _ = frost.local_dkg(suite, 2, 3)
    forged = frost.reshare_part1(fake_keys[1], [1, 2], new_ids, 2)
    commitments[1] = forged[0]
    shares = {1: forged[1][1], 2: contributions[2][1][1]}
    with pytest.raises(InvalidPackageError) as err:
        frost.reshare_part2(1, new_ids, 2, public, commitments, shares)
    assert err.value.culprits == (1,)


@pytest.mark.parametrize("suite", [TR, ED])
def test_repaired_share_signs(suite: Ciphersuite) -> None:
    keys, public = frost.local_dkg(suite, 3, 5)
    lost, helpers = 2, [1, 4, 5]
    deltas = {h: frost.repair_part1(helpers, keys[h], lost) for h in helpers}
    sigmas = {h: frost.repair_part2({s: deltas[s][h] for s in helpers}) for h in helpers}
    repaired = frost.repair_part3(sigmas, lost, public)
    assert repaired.verifying_share == keys[lost].verifying_share
    msg = b"repaired"
    sig = frost.local_sign({**keys, lost: repaired}, public, msg, [2, 3, 4])
    assert independent_verify(suite, public.group_public_key(), msg, sig.raw)
    # A wrong sigma gives a share that does not match; the repair refuses it.
    sigmas[1] = sigmas[4]
    with pytest.raises(InvalidPackageError):
        frost.repair_part3(sigmas, lost, public)


@pytest.mark.parametrize("suite", [TR, ED])
def test_every_object_round_trips_and_bad_bytes_are_refused(suite: Ciphersuite) -> None:
    keys, public = frost.local_dkg(suite, 2, 3)
    s1, p1 = frost.dkg_part1(suite, 1, 3, 2)
    nonces, commitments = frost.commit(keys[1])
    _, c2 = frost.commit(keys[2])
    package = frost.signing_package({1: commitments, 2: c2}, b"m")
    share = frost.sign(package, nonces, keys[1])
    objects: list[frost.FrostObject] = [
        keys[1],
        public,
        s1,
        p1,
        nonces,
        commitments,
        package,
        share,
    ]
    for obj in objects:
        encoded = obj.to_bytes()
        back = type(obj).from_bytes(encoded)
        assert back == obj
        assert encoded.startswith(b"SY\x01")
        with pytest.raises(DecodeError):
            type(obj).from_bytes(encoded[:-3] if len(encoded) > 40 else encoded + b"\x00")
    with pytest.raises(DecodeError):
        frost.KeyPackage.from_bytes(public.to_bytes())
    with pytest.raises(DecodeError):
        frost.KeyPackage.from_bytes(b"not synod")
    assert "raw" not in repr(keys[1])


def test_export_round_trip_and_split() -> None:
    from synod.crypto.import_export import export_signing_key, split

    for suite in (TR, ED):
        keys, public = split(suite, 5, 3)
        secret = export_signing_key([keys[1], keys[3], keys[5]])
        again = export_signing_key([keys[2], keys[3], keys[4]])
        assert secret == again
        _keys2, public2 = split(suite, 4, 2, secret)
        assert public2.verifying_key() == public.verifying_key()
        with pytest.raises(InvalidParametersError):
            export_signing_key([keys[1], keys[2]])


def test_bad_parameters() -> None:
    for t, n in [(1, 3), (4, 3), (0, 0)]:
        with pytest.raises(InvalidParametersError):
            frost.local_dkg(TR, t, n)
    with pytest.raises(InvalidParametersError):
        Ciphersuite.parse("rsa")
    with pytest.raises(InvalidParametersError):
        TaprootTweak(b"short")
    assert Ciphersuite.parse("bip340") is TR
