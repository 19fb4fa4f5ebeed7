"""The threshold-ECDSA (CGGMP) part of `synod keygen`: primes, aux info, keygen, presign, sign."""

from __future__ import annotations

import os
from typing import Any

import coincurve

from synod.chains.evm.address import address_bytes, keccak256
from synod.cli.progress import Progress
from synod.crypto import ecdsa
from synod.crypto.errors import InvalidParametersError, InvalidSignatureError


def _fresh_primes(n: int, progress: Progress) -> list[ecdsa.Primes]:
    workers = max(1, min(n, os.cpu_count() or 1))
    progress.step(
        f"generating Paillier safe primes for {n} parties ({workers} at a time, ~30 s each)"
    )
    return ecdsa.generate_primes(n, lambda k: progress.step(f"  primes ready for {k}/{n} parties"))


def ecdsa_ceremony(
    t: int,
    n: int,
    message: bytes,
    signers: list[int],
    progress: Progress,
    primes_file: str | None = None,
) -> dict[str, Any]:
    if primes_file is not None:
        primes = ecdsa.load_primes(primes_file)
        if len(primes) < n:
            raise InvalidParametersError(
                f"{primes_file} holds primes for {len(primes)} parties, need {n}"
            )
        progress.step(f"using pregenerated primes from {primes_file}")
    else:
        primes = _fresh_primes(n, progress)
    progress.step(f"CGGMP aux info (Paillier keys and their proofs) for {n} parties, ~2.8 s x n^2")
    aux = ecdsa.local_aux_info(n, primes[:n])
    progress.step(f"CGGMP threshold keygen, {t} of {n}")
    shares = ecdsa.local_keygen(t, n, aux)
    public_key = shares[0].public_key
    indices = [s - 1 for s in signers]  # the crate counts parties from 0
    progress.step(f"presigning with parties {signers}")
    presignatures = ecdsa.local_presign(shares, indices)
    digest = keccak256(message)
    progress.step("partial signatures from the presignatures, combined")
    partials = [ecdsa.sign_with_presignature(p, digest) for p in presignatures]
    sig = ecdsa.combine(partials, digest, public_key)
    recovered = coincurve.PublicKey.from_signature_and_message(
        sig.to_recoverable(), digest, hasher=None
    )
    if address_bytes(recovered.format()) != address_bytes(public_key):
        raise InvalidSignatureError("the address recovered from the signature is not the group's")
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(sig.to_bytes()))
    if not coincurve.PublicKey(public_key).verify(der, digest, hasher=None):
        raise InvalidSignatureError("libsecp256k1 rejected the signature")
    progress.step("signature verified by libsecp256k1 and by Ethereum address recovery")
    from synod.cli.keygen import addresses

    return {
        "group_public_key": public_key.hex(),
        "addresses": addresses("ecdsa", public_key),
        "message": message.hex(),
        "digest": digest.hex(),
        "signature": sig.to_bytes().hex(),
        "recovery_id": sig.recovery_id,
        "signers": signers,
        "verified_by": ["cggmp21", "libsecp256k1", "ethereum-address-recovery"],
    }
