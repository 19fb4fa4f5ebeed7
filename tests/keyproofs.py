"""Group keys with real proofs, for tests that walk power transitions through the ledger: the
ledger believes a reported key only with its signature over the challenge for its epoch
(`synod.state.key_proofs`). Keys are derived from a label, so a test names "the old key" and
gets the same key in every epoch, with that epoch's proof."""

from __future__ import annotations

import hashlib

import coincurve
from eth_keys import keys as eth_keys
from nacl.signing import SigningKey

from synod.state.key_proofs import proof_message


def _secret(scheme: str, label: str) -> bytes:
    return hashlib.sha256(f"synod-tests/key/{scheme}/{label}".encode()).digest()


def group_key(scheme: str, label: str) -> bytes:
    secret = _secret(scheme, label)
    if scheme == "bip340":
        return coincurve.PrivateKey(secret).public_key_xonly.format()
    if scheme == "ed25519":
        return bytes(SigningKey(secret).verify_key)
    return bytes(eth_keys.PrivateKey(secret).public_key.to_compressed_bytes())


def sign(scheme: str, label: str, message: bytes) -> bytes:
    secret = _secret(scheme, label)
    if scheme == "bip340":
        return bytes(coincurve.PrivateKey(secret).sign_schnorr(message))
    if scheme == "ed25519":
        return bytes(SigningKey(secret).sign(message).signature)
    return bytes(eth_keys.PrivateKey(secret).sign_msg_hash(message).to_bytes())


def proven(label: str, epoch: int, mode: str = "fresh", scheme: str = "bip340") -> dict[str, str]:
    """A KeyReady entry: the labelled key, proven for `epoch`."""
    key = group_key(scheme, label)
    proof = sign(scheme, label, proof_message(epoch, scheme, key))
    return {"mode": mode, "group_key": key.hex(), "proof": proof.hex()}


def proven_keys(
    label: str, epoch: int, schemes: tuple[str, ...], mode: str = "fresh"
) -> dict[str, dict[str, str]]:
    return {s: proven(label, epoch, mode, s) for s in schemes}
