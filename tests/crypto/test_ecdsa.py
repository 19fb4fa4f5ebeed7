"""Threshold ECDSA (CGGMP21): every signature is checked by libsecp256k1 (coincurve) and by
Ethereum-style public key recovery; BIP32 derivation against an independent CKDpub."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
from collections.abc import Callable

import coincurve
import pytest
from Crypto.Hash import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synod.crypto import ecdsa, encoding
from synod.crypto.ecdsa import (
    AuxInfo,
    ExtendedPublicKey,
    IncompleteKeyShare,
    KeygenSession,
    KeyShare,
    PartialSignature,
    PresignSession,
    Primes,
    Signature,
)
from synod.crypto.errors import (
    DecodeError,
    InvalidParametersError,
    InvalidShareError,
    InvalidSignatureError,
    PresignatureUsedError,
    ProtocolError,
)
from tests import fixtures

PRIMES_FILE = fixtures.PRIMES_FILE
AUX_FILE = fixtures.AUX_FILE
N = ecdsa.CURVE_ORDER

# ---------------------------------------------------------------------------
# Fixtures and independent reference computations
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def primes() -> list[Primes]:
    return fixtures.load_primes()


@pytest.fixture(scope="module")
def live_aux3(primes: list[Primes]) -> list[AuxInfo]:
    """Aux info produced by the real protocol during this run (about 25 s for n = 3)."""
    return ecdsa.local_aux_info(3, primes)


@pytest.fixture(scope="module")
def stored_aux() -> dict[int, list[AuxInfo]]:
    """Aux info for n = 2..10 made earlier by the same protocol from the same primes."""
    return {n: fixtures.stored_aux(n) for n in range(2, 11)}


@pytest.fixture(scope="module")
def shares_2of3(live_aux3: list[AuxInfo]) -> list[KeyShare]:
    return ecdsa.local_keygen(2, 3, live_aux3)


def der(r: int, s: int) -> bytes:
    def integer(x: int) -> bytes:
        b = x.to_bytes(32, "big").lstrip(b"\x00")
        if b[0] & 0x80:
            b = b"\x00" + b
        return b"\x02" + bytes([len(b)]) + b

    body = integer(r) + integer(s)
    return b"\x30" + bytes([len(body)]) + body


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def eth_address(public_key: bytes) -> bytes:
    uncompressed = coincurve.PublicKey(public_key).format(compressed=False)
    return keccak256(uncompressed[1:])[-20:]


def assert_valid(sig: Signature, public_key: bytes, digest: bytes) -> None:
    """libsecp256k1 verifies it, s is low, and key recovery gives the same address."""
    assert 0 < sig.s <= N // 2
    assert coincurve.PublicKey(public_key).verify(der(sig.r, sig.s), digest, hasher=None)
    recovered = coincurve.PublicKey.from_signature_and_message(
        sig.to_recoverable(), digest, hasher=None
    )
    assert eth_address(recovered.format()) == eth_address(public_key)
    assert sig.verify(public_key, digest)


def ckd_pub(public_key: bytes, chain_code: bytes, index: int) -> tuple[bytes, bytes]:
    """BIP32 CKDpub, written out from the BIP (independent of the crate)."""
    assert index < 2**31
    digest = hmac.new(chain_code, public_key + index.to_bytes(4, "big"), hashlib.sha512).digest()
    il, ir = digest[:32], digest[32:]
    assert int.from_bytes(il, "big") < N
    child = coincurve.PublicKey(public_key).add(il)
    return child.format(), ir


# ---------------------------------------------------------------------------
# Keygen and signing for random (t, n)
# ---------------------------------------------------------------------------


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_threshold_sign_interactive_and_presigned(
    stored_aux: dict[int, list[AuxInfo]], data: st.DataObject
) -> None:
    n = data.draw(st.integers(min_value=2, max_value=10), label="n")
    t = data.draw(st.integers(min_value=2, max_value=n), label="t")
    signers = data.draw(
        st.lists(st.integers(0, n - 1), min_size=t, max_size=t, unique=True), label="signers"
    )
    digest = data.draw(st.binary(min_size=32, max_size=32), label="digest")

    shares = ecdsa.local_keygen(t, n, stored_aux[n])
    assert [s.index for s in shares] == list(range(n))
    assert {(s.n, s.threshold, s.public_key, s.chain_code) for s in shares} == {
        (n, t, shares[0].public_key, shares[0].chain_code)
    }
    pk = shares[0].public_key
    assert len(pk) == 33 and pk[0] in (2, 3)

    sig = ecdsa.local_sign(shares, signers, digest)
    assert_valid(sig, pk, digest)

    presigs = ecdsa.local_presign(shares, signers)
    assert [p.index for p in presigs] == list(signers)
    partials = [ecdsa.sign_with_presignature(p, digest) for p in presigs]
    sig2 = ecdsa.combine(partials, digest, pk)
    assert_valid(sig2, pk, digest)
    assert sig2.r != sig.r  # fresh nonce


def test_fewer_than_threshold_cannot_sign(shares_2of3: list[KeyShare]) -> None:
    with pytest.raises(InvalidParametersError):
        ecdsa.PresignSession(os.urandom(32), shares_2of3[0], [0])
    with pytest.raises(InvalidParametersError):
        ecdsa.SignSession(os.urandom(32), shares_2of3[0], [0, 1, 2], bytes(32))
    with pytest.raises(InvalidParametersError):
        ecdsa.SignSession(os.urandom(32), shares_2of3[2], [0, 1], bytes(32))  # not a signer


@pytest.mark.parametrize(("t", "n"), [(1, 3), (4, 3), (2, 1)])
def test_keygen_rejects_bad_threshold(t: int, n: int) -> None:
    with pytest.raises(InvalidParametersError):
        KeygenSession(os.urandom(32), 0, n, t)


def test_combine_rejects_bad_partials(shares_2of3: list[KeyShare]) -> None:
    digest, other = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    pk = shares_2of3[0].public_key
    p = ecdsa.local_presign(shares_2of3, [0, 1])
    wrong_message = [p[0].sign(digest), p[1].sign(other)]
    with pytest.raises(InvalidSignatureError):
        ecdsa.combine(wrong_message, digest, pk)
    q = ecdsa.local_presign(shares_2of3, [0, 1])
    mixed = [q[0].sign(digest), ecdsa.local_presign(shares_2of3, [0, 1])[1].sign(digest)]
    with pytest.raises(InvalidShareError):
        ecdsa.combine(mixed, digest, pk)
    r = ecdsa.local_presign(shares_2of3, [0, 1])
    with pytest.raises(InvalidSignatureError):  # right message, wrong key
        ecdsa.combine([x.sign(digest) for x in r], digest, shares_2of3[0].derive_public_key([1]))


# ---------------------------------------------------------------------------
# BIP32
# ---------------------------------------------------------------------------


def test_bip32_non_hardened_derivation(shares_2of3: list[KeyShare]) -> None:
    share = shares_2of3[1]
    assert share.chain_code is not None and len(share.chain_code) == 32
    path = [0, 7, 2**31 - 1]

    pk, cc = share.public_key, share.chain_code
    for i in path:
        pk, cc = ckd_pub(pk, cc, i)
    derived = share.extended_public_key.derive(path)
    assert derived == ExtendedPublicKey(pk, cc)
    assert share.derive_public_key(path) == pk != share.public_key
    assert ecdsa.derive_public_key(share.extended_public_key, path[:1]).derive(path[1:]) == derived

    digest = keccak256(b"derived child signs")
    sig = ecdsa.local_sign(shares_2of3, [2, 1], digest, path)
    assert_valid(sig, pk, digest)
    with pytest.raises(AssertionError):
        assert_valid(sig, share.public_key, digest)

    presigs = ecdsa.local_presign(shares_2of3, [1, 2])
    sig2 = ecdsa.combine([p.sign(digest, path) for p in presigs], digest, pk)
    assert_valid(sig2, pk, digest)


def test_hardened_path_is_refused(shares_2of3: list[KeyShare]) -> None:
    with pytest.raises(InvalidParametersError):
        shares_2of3[0].derive_public_key([2**31])
    presig = ecdsa.local_presign(shares_2of3, [0, 1])[0]
    with pytest.raises(InvalidParametersError):
        presig.sign(bytes(32), [2**31 + 5])
    assert not presig.used  # refused before consuming


# ---------------------------------------------------------------------------
# Presignature single use
# ---------------------------------------------------------------------------


def test_presignature_signs_once(shares_2of3: list[KeyShare]) -> None:
    presig = ecdsa.local_presign(shares_2of3, [0, 2])[0]
    assert not presig.used
    presig.sign(hashlib.sha256(b"first").digest())
    assert presig.used
    with pytest.raises(PresignatureUsedError):
        presig.sign(hashlib.sha256(b"second").digest())


def test_session_output_is_one_presignature_object(shares_2of3: list[KeyShare]) -> None:
    eid = os.urandom(32)
    sessions = [PresignSession(eid, shares_2of3[i], [0, 1]) for i in (0, 1)]
    ecdsa.run_local(sessions)
    sessions[0].output.sign(bytes(32))
    with pytest.raises(PresignatureUsedError):  # the session does not hand out a fresh copy
        sessions[0].output.sign(bytes(range(32)))


# ---------------------------------------------------------------------------
# Serialization
# ---------------------------------------------------------------------------


def test_live_aux_info_matches_stored(
    live_aux3: list[AuxInfo], stored_aux: dict[int, list[AuxInfo]]
) -> None:
    """Same primes, same Paillier moduli: ties the stored data to the primes file."""

    def moduli(aux: AuxInfo) -> list[object]:
        return [p["N"] for p in json.loads(aux.raw)["parties"]]

    assert [moduli(a) for a in live_aux3] == [moduli(a) for a in stored_aux[3]]
    assert live_aux3[0].raw != stored_aux[3][0].raw  # ring-Pedersen parameters are fresh


def test_round_trips(
    primes: list[Primes], live_aux3: list[AuxInfo], shares_2of3: list[KeyShare]
) -> None:
    assert Primes.from_bytes(primes[0].to_bytes()) == primes[0]
    aux = live_aux3[0]
    assert AuxInfo.from_bytes(aux.to_bytes()) == aux and aux.n == 3
    incomplete = ecdsa.local_incomplete_keygen(2, 3)
    assert IncompleteKeyShare.from_bytes(incomplete[2].to_bytes()) == incomplete[2]
    assert incomplete[2].index == 2 and incomplete[2].threshold == 2
    share = shares_2of3[0]
    assert KeyShare.from_bytes(share.to_bytes()) == share
    xpub = share.extended_public_key
    assert ExtendedPublicKey.from_bytes(xpub.to_bytes()) == xpub

    digest = hashlib.sha256(b"round trip").digest()
    presigs = ecdsa.local_presign(shares_2of3, [0, 1])
    assert [(p.index, p.signers) for p in presigs] == [(0, (0, 1)), (1, (0, 1))]
    assert presigs[0].extended_public_key == xpub
    partials = [p.sign(digest) for p in presigs]
    assert [PartialSignature.from_bytes(p.to_bytes()) for p in partials] == partials
    sig = ecdsa.combine(partials, digest, share.public_key)
    assert_valid(sig, share.public_key, digest)
    assert Signature.decode(sig.encode()) == sig
    assert Signature.from_recoverable(sig.to_recoverable()) == sig
    assert Signature.from_rs(sig.to_bytes(), share.public_key, digest) == sig
    assert len(sig.to_bytes()) == 64


def _all_encodings(
    primes: list[Primes], aux: list[AuxInfo], shares: list[KeyShare]
) -> dict[str, tuple[bytes, Callable[[bytes], object]]]:
    digest = bytes(range(32))
    presigs = ecdsa.local_presign(shares, [0, 1])
    partial = presigs[1].sign(digest)
    sig = ecdsa.combine([presigs[0].sign(digest), partial], digest, shares[0].public_key)
    return {
        "primes": (primes[0].to_bytes(), Primes.from_bytes),
        "aux": (aux[1].to_bytes(), AuxInfo.from_bytes),
        "incomplete": (
            ecdsa.local_incomplete_keygen(2, 3)[0].to_bytes(),
            IncompleteKeyShare.from_bytes,
        ),
        "share": (shares[1].to_bytes(), KeyShare.from_bytes),
        "partial": (partial.to_bytes(), PartialSignature.from_bytes),
        "signature": (sig.encode(), Signature.decode),
        "xpub": (shares[0].extended_public_key.to_bytes(), ExtendedPublicKey.from_bytes),
    }


@pytest.fixture(scope="module")
def encodings(
    primes: list[Primes], live_aux3: list[AuxInfo], shares_2of3: list[KeyShare]
) -> dict[str, tuple[bytes, Callable[[bytes], object]]]:
    return _all_encodings(primes, live_aux3, shares_2of3)


def test_wrong_kind_is_refused(
    encodings: dict[str, tuple[bytes, Callable[[bytes], object]]],
) -> None:
    for name, (data, _) in encodings.items():
        for other, (_, parse) in encodings.items():
            if other != name:
                with pytest.raises(DecodeError):
                    parse(data)


def test_rewrapped_payload_of_another_kind_is_refused(
    encodings: dict[str, tuple[bytes, Callable[[bytes], object]]],
) -> None:
    """Even with the right header, the crate refuses a payload of another type."""
    kinds = {name: encoding.kind_of(data) for name, (data, _) in encodings.items()}
    for name, (data, _) in encodings.items():
        payload = encoding.unwrap(kinds[name], data)
        for other, (_, parse) in encodings.items():
            if other != name and {name, other} != {"incomplete", "share"}:
                with pytest.raises(DecodeError):
                    parse(encoding.wrap(kinds[other], payload))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_corrupted_bytes_are_refused(
    encodings: dict[str, tuple[bytes, Callable[[bytes], object]]], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(encodings)))
    blob, parse = encodings[name]
    header = 4 + blob[3]
    how = data.draw(st.sampled_from(["truncate", "insert", "header"]))
    if how == "truncate":  # every proper prefix of a payload is malformed
        cut = data.draw(st.integers(0, len(blob) - 1))
        bad = blob[:cut]
    elif how == "insert":  # 0xff is never valid inside a JSON document or a signature
        pos = data.draw(st.integers(header, len(blob)))
        bad = blob[:pos] + b"\xff" + blob[pos:]
    else:
        pos = data.draw(st.integers(0, header - 1))
        bad = blob[:pos] + bytes([blob[pos] ^ 0x5A]) + blob[pos + 1 :]
    with pytest.raises(DecodeError):
        parse(bad)


def test_signature_range_checks() -> None:
    with pytest.raises(DecodeError):
        Signature(1, N - 1, 0)  # high s
    with pytest.raises(DecodeError):
        Signature(0, 1, 0)
    with pytest.raises(DecodeError):
        Signature(1, 1, 2)


# ---------------------------------------------------------------------------
# Corrupted protocol messages
# ---------------------------------------------------------------------------


def _keygen_sessions(t: int, n: int) -> list[KeygenSession]:
    eid = os.urandom(32)
    return [KeygenSession(eid, i, n, t) for i in range(n)]


def test_undecodable_message_names_sender() -> None:
    sessions = _keygen_sessions(2, 3)
    (recipient, msg), *_ = sessions[1].outgoing()
    assert recipient is None
    tag = encoding.kind_of(msg)
    payload = encoding.unwrap(tag, msg)
    for bad in (
        encoding.wrap(tag, payload[: len(payload) // 2]),
        encoding.wrap(tag, b"\xff" + payload),
        b"XX" + msg[2:],
        encoding.wrap("cggmp:secp256k1:sign_msg", payload),
    ):
        with pytest.raises(ProtocolError) as err:
            sessions[0].receive(1, True, bad)
        assert err.value.culprits == (1,)
    sessions[0].receive(1, True, msg)  # the session is intact after dropping bad messages
    with pytest.raises(InvalidParametersError):
        sessions[0].receive(7, True, msg)


def _tamper(node: object) -> bool:
    """Change, in place, the first long byte array or hex string in a decoded message."""
    if isinstance(node, dict):
        items: list[tuple[object, object]] = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return False
    for key, value in items:
        if isinstance(value, list) and len(value) >= 16 and all(isinstance(x, int) for x in value):
            value[0] = (value[0] + 1) % 256
            return True
        if (
            isinstance(value, str)
            and len(value) >= 16
            and all(c in "0123456789abcdef" for c in value)
        ):
            new = value[:-1] + ("1" if value[-1] != "1" else "2")
            if isinstance(node, dict):
                node[key] = new
            else:
                assert isinstance(node, list) and isinstance(key, int)
                node[key] = new
            return True
        if _tamper(value):
            return True
    return False


def test_tampered_commitment_blames_sender() -> None:
    """Party 2 broadcasts a commitment other than the one it holds: the crate blames party 2
    (its echo of round 1 disagrees with what the others received)."""
    sessions = _keygen_sessions(2, 3)
    tag = "cggmp:secp256k1:keygen_msg"
    culprits: dict[int, set[tuple[int, ...]]] = {}
    queue = [(s.index, r, m) for s in sessions for r, m in s.outgoing()]
    tampered = False
    while queue:
        sender, recipient, msg = queue.pop(0)
        if sender == 2 and not tampered:
            doc = json.loads(encoding.unwrap(tag, msg))
            assert _tamper(doc)
            msg = encoding.wrap(tag, json.dumps(doc).encode())
            tampered = True
        for j in [i for i in range(3) if i != sender] if recipient is None else [recipient]:
            try:
                sessions[j].receive(sender, recipient is None, msg)
            except ProtocolError as err:
                culprits.setdefault(j, set()).add(err.culprits)
        queue += [(s.index, r, m) for s in sessions for r, m in s.outgoing()]
    assert tampered
    # The honest parties both blame party 2. (Party 2's own session saw its untampered
    # commitment, so it blames the others' echoes: it is the cheater, its view is moot.)
    assert culprits[0] == culprits[1] == {(2,)}
    for s in sessions[:2]:
        assert not s.done
        with pytest.raises(ProtocolError):
            _ = s.output


def test_tampered_presign_proof_blames_sender(shares_2of3: list[KeyShare]) -> None:
    """A corrupted p2p zero-knowledge proof in presigning is pinned on its sender."""
    eid = os.urandom(32)
    signers = [2, 0]
    sessions = {i: PresignSession(eid, shares_2of3[i], signers) for i in signers}
    tag = "cggmp:secp256k1:presign_msg"
    queue = [(i, r, m) for i, s in sessions.items() for r, m in s.outgoing()]
    errors: list[ProtocolError] = []
    tampered = False
    while queue and not errors:
        sender, recipient, msg = queue.pop(0)
        if sender == 2 and recipient is not None and not tampered:
            doc = json.loads(encoding.unwrap(tag, msg))
            assert _tamper(doc)
            msg = encoding.wrap(tag, json.dumps(doc).encode())
            tampered = True
        for j in [i for i in signers if i != sender] if recipient is None else [recipient]:
            try:
                sessions[j].receive(sender, recipient is None, msg)
            except ProtocolError as err:
                errors.append(err)
        queue += [(i, r, m) for i, s in sessions.items() for r, m in s.outgoing()]
    assert tampered
    assert [e.culprits for e in errors] == [(2,)]


if __name__ == "__main__":
    # Regenerate the TEST-ONLY data: `python -m tests.crypto.test_ecdsa primes|aux`.
    import sys
    from concurrent.futures import ThreadPoolExecutor

    if sys.argv[1:] == ["primes"]:
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            fresh = list(pool.map(lambda _: Primes.generate(), range(10)))
        PRIMES_FILE.write_text(
            json.dumps(
                {
                    "warning": "TEST-ONLY pregenerated Paillier safe primes. Public, therefore "
                    "worthless as secrets: never use them for real keys.",
                    "encoding": "hex of synod versioned bytes, kind 'cggmp:secp256k1:primes'",
                    "primes": [p.to_bytes().hex() for p in fresh],
                },
                indent=1,
            )
            + "\n"
        )
    elif sys.argv[1:] == ["aux"]:
        pool_primes = fixtures.load_primes()
        AUX_FILE.write_text(
            json.dumps(
                {
                    "warning": "TEST-ONLY aux info (with Paillier secret keys) made from "
                    "cggmp_primes.json by the aux info protocol. Never use for real keys.",
                    "aux_info": {
                        str(n): [json.loads(a.raw) for a in ecdsa.local_aux_info(n, pool_primes)]
                        for n in range(2, 11)
                    },
                },
                separators=(",", ":"),
            )
            + "\n"
        )
    else:
        sys.exit("usage: python -m tests.crypto.test_ecdsa primes|aux")


def test_a_protocol_step_lets_other_threads_run(shares_2of3: list[KeyShare]) -> None:
    """A CGGMP step takes up to seconds of CPU in a member, whose peer links and control
    service run on other threads: the core releases the GIL for it (the session itself never
    leaves its thread). Another thread must see the main thread inside a step."""
    signers = [0, 1]
    eid = os.urandom(32)
    inside, seen, stop = False, [], threading.Event()

    def watch() -> None:
        while not stop.wait(0.0002):
            if inside:
                seen.append(True)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(10.0)  # the GIL changes hands only where a thread lets go of it
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        inside = True
        sessions = [ecdsa.PresignSession(eid, shares_2of3[i], signers) for i in signers]
        inside = False
        queue = [(s.index, r, m) for s in sessions for r, m in s.outgoing()]
        inside = True
        while queue:  # every step, in the order a network would deliver them
            sender, recipient, msg = queue.pop(0)
            for s in sessions:
                if s.index != sender and recipient in (None, s.index):
                    s.receive(sender, recipient is None, msg)
                    queue += [(s.index, r, m) for r, m in s.outgoing()]
        inside = False
    finally:
        stop.set()
        watcher.join()
        sys.setswitchinterval(previous)
    assert all(s.done for s in sessions)
    assert seen, "no other thread ran during the protocol's steps"
