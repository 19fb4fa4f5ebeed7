"""Identifiers outside the core's u16 range give typed errors, never `OverflowError`."""

from __future__ import annotations

import pytest

from synod.crypto import frost
from synod.crypto.errors import InvalidParametersError

BAD = (70_000, -1, 2**64)


@pytest.fixture(scope="module")
def keys() -> tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage]:
    return frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)


@pytest.mark.parametrize("ident", BAD)
def test_out_of_range_identifiers_are_typed_errors(keys, ident: int) -> None:  # type: ignore[no-untyped-def]
    kp, pub = keys
    nonces, commitment = frost.commit(kp[1])
    with pytest.raises(InvalidParametersError):
        frost.signing_package({ident: commitment, 1: commitment}, b"m" * 32)
    package = frost.signing_package({1: commitment, 2: frost.commit(kp[2])[1]}, b"m" * 32)
    share = frost.sign(package, nonces, kp[1])
    with pytest.raises(InvalidParametersError):
        frost.ShareVerifier(package, pub).verify(ident, share)
    with pytest.raises(InvalidParametersError):
        frost.verify_share(ident, package, share, pub)
    with pytest.raises(InvalidParametersError):
        frost.dkg_part1(frost.Ciphersuite.SECP256K1_TR, ident, 3, 2)
    with pytest.raises(InvalidParametersError):
        frost.reshare_part1(kp[1], (1, 2), (1, ident, 3), 2)
