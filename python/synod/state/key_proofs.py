"""Proven keys: a new committee's group key is believed only with a signature by that key over
a challenge the ledger fixes itself (the transition's epoch, the scheme and the key), checked
by a verifier nobody here wrote: libsecp256k1 (coincurve) for BIP340, libsodium (PyNaCl) for
Ed25519, Ethereum public-key recovery (eth-keys) for ECDSA. A key whose proof does not verify
is refused by the ledger (`InvalidProof`), whoever reports it."""

from __future__ import annotations

import hashlib

from synod.state.errors import InvalidProof

DOMAIN = b"synod/transition-proof|"


def proof_message(epoch: int, scheme: str, group_key: bytes) -> bytes:
    """What the new committee signs with its group key before the ledger takes the key."""
    return hashlib.sha256(DOMAIN + f"{epoch}|{scheme}|".encode() + group_key).digest()


def verify_proof(scheme: str, group_key: bytes, message: bytes, signature: bytes) -> None:
    """`InvalidProof` unless `signature` by `group_key` over `message` verifies."""
    if not _verifies(scheme, group_key, message, signature):
        raise InvalidProof(f"{scheme}: the new committee's proof signature does not verify")


def check_key(epoch: int, scheme: str, group_key_hex: str, proof_hex: str) -> None:
    """A reported key, checked against the challenge for `epoch`."""
    try:
        group_key, signature = bytes.fromhex(group_key_hex), bytes.fromhex(proof_hex)
    except ValueError:
        raise InvalidProof(f"{scheme}: the group key and its proof are hex") from None
    verify_proof(scheme, group_key, proof_message(epoch, scheme, group_key), signature)


def _verifies(scheme: str, group_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        if scheme == "bip340":
            import coincurve

            return bool(coincurve.PublicKeyXOnly(group_key).verify(signature, message))
        if scheme == "ed25519":
            from nacl.signing import VerifyKey

            VerifyKey(group_key).verify(message, signature)
            return True
        if scheme == "ecdsa":
            from eth_keys.datatypes import Signature

            recovered = Signature(signature).recover_public_key_from_msg_hash(message)
            return bool(recovered.to_compressed_bytes() == group_key)
    except Exception:  # a malformed key or signature is a proof that does not verify
        return False
    return False
