"""Every entry point of the Rust core, called with edge-case arguments (empty, zero, maximum,
wrong lengths, out-of-range ints), raises only `CryptoError`s: never pyo3's `PanicException`
(a `BaseException`), never a bare `OverflowError` or `ValueError`.

Each case starts from a valid call and replaces one argument by an edge value of its type.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from synod import _core
from synod.crypto import ecdsa, frost
from synod.crypto.errors import CryptoError, InvalidParametersError, call_core
from tests import fixtures

SUITES = [frost.Ciphersuite.SECP256K1_TR, frost.Ciphersuite.ED25519]

BIG = b"\xff" * (1 << 16)


def _int_edges() -> list[int]:
    return [0, 1, 2, 255, 256, 1000, 65535, 65536, -1, 2**32, 2**64]


def _bytes_edges(valid: bytes) -> list[bytes]:
    return [b"", b"\x00", valid[:-1], valid + b"\x00", b"\x00" * len(valid), BIG]


def _list_edges() -> list[list[int]]:
    return [[], [0], [65535], [1, 1], [2**31], list(range(1, 2000))]


def _map_edges(valid: dict[int, Any]) -> list[dict[int, Any]]:
    some = next(iter(valid.values()), b"x")
    out = [{}, {0: some}, {65535: some}, {1: b""}, {i: some for i in range(1, 300)}]
    if isinstance(some, _core.FrostParsed):
        out += [{1: h} for h in _foreign_handles() if h is not some]
    return out


@functools.cache
def _foreign_handles() -> tuple[_core.FrostParsed, ...]:
    """Parsed objects of every signing kind and both suites: each is the wrong handle for
    all but one argument."""
    out: list[_core.FrostParsed] = []
    for suite in SUITES:
        keys, public = frost.local_dkg(suite, 2, 3)
        nonces, commitments = frost.commit(keys[1])
        package = frost.signing_package({1: commitments}, b"m")
        share = frost.SignatureShare.from_scalar(suite, b"\x01" + bytes(31))
        for obj in (keys[1], public, nonces, commitments, package, share):
            out.append(obj._handle())
    return tuple(out)


def edges(value: object) -> list[object]:
    """Edge values of `value`'s type."""
    if isinstance(value, _core.FrostParsed):
        return [h for h in _foreign_handles() if h is not value] + [b"", None]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return list(_int_edges())
    if isinstance(value, str):
        return ["", "secp256k1", "x" * 1000]
    if isinstance(value, bytes):
        return list(_bytes_edges(value))
    if isinstance(value, list) and all(isinstance(v, bytes) for v in value):
        return [[], [b""], [value[0]] * 3 if value else [b"x"], [BIG]]
    if isinstance(value, list):
        return list(_list_edges())
    if isinstance(value, dict):
        return list(_map_edges(value))
    if value is None:
        return [b"", b"\x00" * 32]
    raise AssertionError(f"no edge values for {type(value).__name__}")


@dataclass
class Call:
    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    skip: frozenset[int] = frozenset()  # argument positions whose mutation is too slow


def _frost_calls(suite: frost.Ciphersuite) -> list[Call]:
    s = suite.value
    keys, public = frost.local_dkg(suite, 2, 3)
    kp1, kp2 = keys[1], keys[2]
    n1, c1 = frost.commit(kp1)
    n2, c2 = frost.commit(kp2)
    package = frost.signing_package({1: c1, 2: c2}, b"message")
    share1 = frost.sign(package, n1, kp1)
    share2 = frost.sign(frost.SigningPackage(suite, package.raw), n2, kp2)
    sig = frost.aggregate(package, {1: share1, 2: share2}, public)
    vk = public.verifying_key()
    # DKG and refresh round data.
    r1 = {i: frost.dkg_part1(suite, i, 3, 2) for i in (1, 2, 3)}
    r2 = {i: frost.dkg_part2(r1[i][0], {j: r1[j][1] for j in r1 if j != i}) for i in r1}
    f1 = {i: frost.refresh_part1(suite, i, 3, 2) for i in (1, 2, 3)}
    f2 = {i: frost.refresh_part2(f1[i][0], {j: f1[j][1] for j in f1 if j != i}) for i in f1}
    round1_of_1 = {j: r1[j][1]._handle() for j in (2, 3)}
    round2_to_1 = {j: r2[j][1][1]._handle() for j in (2, 3)}
    refresh1_of_1 = {j: f1[j][1]._handle() for j in (2, 3)}
    refresh2_to_1 = {j: f2[j][1][1]._handle() for j in (2, 3)}
    # Repair of participant 3 by helpers 1 and 2.
    d1 = frost.repair_part1([1, 2], kp1, 3)
    d2 = frost.repair_part1([1, 2], kp2, 3)
    sigma1 = frost.repair_part2({1: d1[1], 2: d2[1]})
    sigma2 = frost.repair_part2({1: d1[2], 2: d2[2]})
    # Reshare from {1, 2} to {1, 2, 3} with threshold 2.
    rc1, rs1 = frost.reshare_part1(kp1, [1, 2], [1, 2, 3], 2)
    rc2, rs2 = frost.reshare_part1(kp2, [1, 2], [1, 2, 3], 2)
    scalar = share1.raw
    verifier = _core.FrostShareVerifier(s, package._handle(), public._handle())
    point = c1.raw[5 : 5 + (len(c1.raw) - 5) // 2]  # after the crate's 5-byte header
    return [
        Call("frost_dkg_part1", _core.frost_dkg_part1, (s, False, 1, 3, 2)),
        Call("frost_dkg_part2", _core.frost_dkg_part2, (s, False, r1[1][0].raw, round1_of_1)),
        Call(
            "frost_dkg_part3",
            _core.frost_dkg_part3,
            (s, r2[1][0].raw, round1_of_1, round2_to_1),
        ),
        Call("frost_parse", _core.frost_parse, (s, "signing_package", package.raw)),
        Call("frost_round1", _core.frost_round1, (s, kp1._handle())),
        Call(
            "frost_signing_package",
            _core.frost_signing_package,
            (s, {1: c1._handle(), 2: c2._handle()}, b"message"),
        ),
        Call(
            "frost_round2",
            _core.frost_round2,
            (s, package._handle(), n1._handle(), kp1._handle()),
        ),
        Call(
            "frost_aggregate",
            _core.frost_aggregate,
            (s, package._handle(), {1: share1._handle(), 2: share2._handle()}, public._handle()),
        ),
        Call("frost_verifying_key", _core.frost_verifying_key, (s, public._handle())),
        Call(
            "frost_verify_share",
            _core.frost_verify_share,
            (s, 1, package._handle(), share1._handle(), public._handle()),
        ),
        Call("frost_verify", _core.frost_verify, (s, vk, b"message", sig.raw)),
        Call(
            "frost_signing_package_info",
            _core.frost_signing_package_info,
            (s, package._handle()),
        ),
        Call(
            "frost_signing_package_commitment",
            _core.frost_signing_package_commitment,
            (s, package._handle(), 1),
        ),
        Call("frost_key_package_info", _core.frost_key_package_info, (s, kp1._handle())),
        Call(
            "frost_public_package_info",
            _core.frost_public_package_info,
            (s, public._handle()),
        ),
        Call("frost_check", _core.frost_check, (s, "signing_package", package.raw)),
        Call(
            "frost_check_signing_package",
            _core.frost_check_signing_package,
            (s, package.raw, 1, 2, [1, 2, 3], 65536),
        ),
        Call(
            "frost_refresh_part3",
            _core.frost_refresh_part3,
            (s, f2[1][0].raw, refresh1_of_1, refresh2_to_1, public.raw, kp1.raw),
        ),
        Call("frost_repair_part1", _core.frost_repair_part1, (s, [1, 2], kp1.raw, 3)),
        Call("frost_repair_part2", _core.frost_repair_part2, (s, {1: d1[1].raw, 2: d2[1].raw})),
        Call(
            "frost_repair_part3",
            _core.frost_repair_part3,
            (s, {1: sigma1.raw, 2: sigma2.raw}, 3, public.raw),
        ),
        Call("frost_reshare_part1", _core.frost_reshare_part1, (s, kp1.raw, [1, 2], [1, 2, 3], 2)),
        Call(
            "frost_reshare_part2",
            _core.frost_reshare_part2,
            (
                s,
                3,
                [1, 2, 3],
                2,
                public.raw,
                {1: rc1.raw, 2: rc2.raw},
                {1: rs1[3].raw, 2: rs2[3].raw},
            ),
        ),
        Call("frost_split", _core.frost_split, (s, 3, 2, None)),
        Call("frost_reconstruct", _core.frost_reconstruct, (s, [kp1.raw, kp2.raw])),
        Call("frost_import_shares", _core.frost_import_shares, (s, {1: scalar, 2: scalar}, 2)),
        Call("frost_raw_commitments", _core.frost_raw_commitments, (s, point, point)),
        Call("frost_raw_share", _core.frost_raw_share, (s, scalar)),
        Call(
            "FrostShareVerifier",
            _core.FrostShareVerifier,
            (s, package._handle(), public._handle()),
        ),
        Call("FrostShareVerifier.verify", verifier.verify, (1, share1._handle())),
    ]


def _ecdsa_calls() -> list[Call]:
    aux = fixtures.stored_aux(3)
    incomplete = ecdsa.local_incomplete_keygen(2, 3)
    shares = [ecdsa.KeyShare.from_parts(s, a) for s, a in zip(incomplete, aux, strict=True)]
    primes = fixtures.load_primes()[0]
    digest = os.urandom(32)
    pres = ecdsa.local_presign(shares, [0, 1])
    partials = [p.sign(digest) for p in pres]
    sig = ecdsa.combine(partials, digest, shares[0].public_key)
    pk, cc = shares[0].public_key, shares[0].chain_code or b""
    session = _core.ecdsa_keygen_session(os.urandom(32), 0, 3, 2)
    fresh, spare = ecdsa.local_presign(shares, [0, 1])
    moved = bytes(spare._core.move_out())
    return [
        # Starting aux info generation with valid arguments costs seconds: mutate the rest.
        Call(
            "ecdsa_aux_info_session",
            _core.ecdsa_aux_info_session,
            (b"e" * 32, 5, 3, primes.raw),
            skip=frozenset({0}),
        ),
        Call("ecdsa_keygen_session", _core.ecdsa_keygen_session, (b"e" * 32, 0, 3, 2)),
        Call("ecdsa_presign_session", _core.ecdsa_presign_session, (b"e", shares[0].raw, [0, 1])),
        Call(
            "ecdsa_sign_session",
            _core.ecdsa_sign_session,
            (b"e", shares[0].raw, [0, 1], digest, [1]),
        ),
        Call("ecdsa_primes_validate", _core.ecdsa_primes_validate, (primes.raw,)),
        Call("ecdsa_aux_info_info", _core.ecdsa_aux_info_info, (aux[0].raw,)),
        Call(
            "ecdsa_incomplete_key_share_info",
            _core.ecdsa_incomplete_key_share_info,
            (incomplete[0].raw,),
        ),
        Call("ecdsa_key_share_info", _core.ecdsa_key_share_info, (shares[0].raw,)),
        Call(
            "ecdsa_key_share_from_parts",
            _core.ecdsa_key_share_from_parts,
            (incomplete[0].raw, aux[0].raw),
        ),
        Call(
            "ecdsa_partial_signature_info",
            _core.ecdsa_partial_signature_info,
            (partials[0].raw,),
        ),
        Call(
            "ecdsa_combine",
            _core.ecdsa_combine,
            ([p.raw for p in partials], pk, digest),
        ),
        Call("ecdsa_verify", _core.ecdsa_verify, (pk, digest, sig.to_bytes())),
        Call("ecdsa_recovery_id", _core.ecdsa_recovery_id, (pk, digest, sig.to_bytes())),
        Call("ecdsa_derive_public_key", _core.ecdsa_derive_public_key, (pk, cc, [1, 2])),
        Call("EcdsaSession.receive", session.receive, (1, True, b"{}")),
        Call("EcdsaPresignature.issue_partial", fresh._core.issue_partial, (digest, [1])),
        Call("ecdsa_presignature_restore", _core.ecdsa_presignature_restore, (moved,)),
    ]


@functools.cache
def _calls() -> dict[str, Call]:
    calls = [c for suite in SUITES for c in _frost_calls(suite)] + _ecdsa_calls()
    out: dict[str, Call] = {}
    for c in calls:
        key = c.name if c.name not in out else f"{c.name}[ed25519]"
        out[key] = c
    return out


_FROST_NAMES = [
    "frost_parse",
    "frost_dkg_part1",
    "frost_dkg_part2",
    "frost_dkg_part3",
    "frost_round1",
    "frost_signing_package",
    "frost_round2",
    "frost_aggregate",
    "frost_verifying_key",
    "frost_verify_share",
    "frost_verify",
    "frost_signing_package_info",
    "frost_signing_package_commitment",
    "frost_key_package_info",
    "frost_public_package_info",
    "frost_check",
    "frost_check_signing_package",
    "frost_refresh_part3",
    "frost_repair_part1",
    "frost_repair_part2",
    "frost_repair_part3",
    "frost_reshare_part1",
    "frost_reshare_part2",
    "frost_split",
    "frost_reconstruct",
    "frost_import_shares",
    "frost_raw_commitments",
    "frost_raw_share",
    "FrostShareVerifier",
    "FrostShareVerifier.verify",
]
_ECDSA_NAMES = [
    "ecdsa_aux_info_session",
    "ecdsa_keygen_session",
    "ecdsa_presign_session",
    "ecdsa_sign_session",
    "ecdsa_primes_validate",
    "ecdsa_aux_info_info",
    "ecdsa_incomplete_key_share_info",
    "ecdsa_key_share_info",
    "ecdsa_key_share_from_parts",
    "ecdsa_partial_signature_info",
    "ecdsa_combine",
    "ecdsa_verify",
    "ecdsa_recovery_id",
    "ecdsa_derive_public_key",
    "EcdsaSession.receive",
    "EcdsaPresignature.issue_partial",
    "ecdsa_presignature_restore",
]


def _lookup(name: str) -> Call:
    calls = _calls()
    if name.endswith("[tr]"):
        return calls[name[: -len("[tr]")]]
    if name.endswith("[ed]"):
        return calls[f"{name[: -len('[ed]')]}[ed25519]"]
    return calls[name]


def _only_crypto_errors(call: Call, args: tuple[Any, ...]) -> None:
    try:
        call_core(call.fn, *args)
    except CryptoError:
        pass
    except BaseException as err:
        pytest.fail(f"{call.name}{_describe(args)} raised {type(err).__name__}: {err}")


def _describe(args: tuple[Any, ...]) -> str:
    def short(a: object) -> str:
        r = repr(a)
        return r if len(r) < 40 else r[:37] + "..."

    return "(" + ", ".join(short(a) for a in args) + ")"


@pytest.mark.parametrize("name", [f"{f}[{s}]" for s in ("tr", "ed") for f in _FROST_NAMES])
def test_frost_entry_points_raise_only_crypto_errors(name: str) -> None:
    call = _lookup(name)
    call_core(call.fn, *call.args)  # the base case is valid
    _mutate_all(call)


@pytest.mark.parametrize("name", _ECDSA_NAMES)
def test_ecdsa_entry_points_raise_only_crypto_errors(name: str) -> None:
    _mutate_all(_lookup(name))


def _mutate_all(call: Call) -> None:
    for pos, value in enumerate(call.args):
        if pos in call.skip:
            continue
        for edge in edges(value):
            args = (*call.args[:pos], edge, *call.args[pos + 1 :])
            _only_crypto_errors(call, args)


@pytest.mark.parametrize("suite", SUITES)
def test_reshare_with_threshold_zero_is_a_typed_error(suite: frost.Ciphersuite) -> None:
    """It indexed an empty vector of coefficients and panicked."""
    keys, public = frost.local_dkg(suite, 2, 3)
    _rc1, rs1 = frost.reshare_part1(keys[1], [1, 2], [1, 2, 3], 2)
    with pytest.raises(InvalidParametersError):
        call_core(
            _core.frost_reshare_part2,
            suite.value,
            3,
            [1, 2, 3],
            0,
            public.raw,
            {1: b"", 2: b""},  # commitments with no coefficients
            {1: rs1[3].raw, 2: rs1[3].raw},
        )


def test_identifier_out_of_range_is_a_typed_error() -> None:
    keys, _ = frost.local_dkg(frost.Ciphersuite.ED25519, 2, 3)
    for bad in (0, 65536, -1, 2**70):
        with pytest.raises(InvalidParametersError):
            frost.dkg_part1(frost.Ciphersuite.ED25519, bad, 3, 2)
        with pytest.raises(InvalidParametersError):
            frost.repair_part1([1, 2], keys[1], bad)
