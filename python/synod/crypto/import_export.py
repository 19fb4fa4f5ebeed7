"""Trusted-dealer import and key export: SINGLE-POINT-OF-FAILURE tools.

Everything else in synod keeps the group secret split: no machine ever holds
it. The functions here are the deliberate exceptions, for migrating an
existing single key into a committee (`split`) and for an emergency exit of a
committee's key (`export_signing_key`). Whoever runs them sees the whole key;
run them offline, on a machine you trust, and destroy the output after use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from synod import _core
from synod.crypto.errors import InvalidParametersError, core_errors
from synod.crypto.frost import Ciphersuite, KeyPackage, PublicKeyPackage, _check_threshold


def split(
    suite: Ciphersuite, max_signers: int, min_signers: int, signing_key: bytes | None = None
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    """Deal shares of `signing_key` (a fresh random key if None) to identifiers 1..max_signers.

    The dealer knows the whole key. Prefer the DKG (`synod.crypto.frost.dkg_part1`).
    """
    _check_threshold(min_signers, max_signers)
    with core_errors():
        kps, pkp = _core.frost_split(suite.value, max_signers, min_signers, signing_key)
    return {i: KeyPackage(suite, raw) for i, raw in kps.items()}, PublicKeyPackage(suite, pkp)


def export_signing_key(key_packages: Sequence[KeyPackage]) -> bytes:
    """Reconstruct the group signing key from at least t key packages (the crate's `reconstruct`).

    This recreates the single point of failure the committee exists to avoid.
    """
    if not key_packages:
        raise InvalidParametersError("no key packages given")
    suite = key_packages[0].suite
    if any(kp.suite is not suite for kp in key_packages):
        raise InvalidParametersError("key packages from different ciphersuites")
    t = key_packages[0].min_signers
    if len({kp.identifier for kp in key_packages}) < t:
        raise InvalidParametersError(f"need {t} distinct key packages, got {len(key_packages)}")
    with core_errors():
        return _core.frost_reconstruct(suite.value, [kp.raw for kp in key_packages])


def import_shares(
    suite: Ciphersuite, shares: Mapping[int, bytes], min_signers: int
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    """Build key packages from raw secret share scalars (e.g. RFC 9591 test vectors).

    The group key is interpolated from the shares' public images.
    """
    with core_errors():
        kps, pkp = _core.frost_import_shares(
            suite.value, {int(k): bytes(v) for k, v in shares.items()}, min_signers
        )
    return {i: KeyPackage(suite, raw) for i, raw in kps.items()}, PublicKeyPackage(suite, pkp)
