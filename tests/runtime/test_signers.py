"""The runtime's committee signers run real threshold sessions in the simulator."""

from __future__ import annotations

import hashlib

import coincurve
import pytest

from synod.chains.evm.address import address_bytes
from synod.crypto import ecdsa, frost
from synod.runtime.interfaces import SigningTimeout
from synod.sim.committee_signer import CggmpCommitteeSigner, FrostCommitteeSigner
from synod.state.machine import Withdrawal
from tests.fixtures import stored_aux
from tests.fixtures import withdrawal as withdrawal_record


def withdrawal(template: str = '{"to":"x"}') -> Withdrawal:
    return withdrawal_record(template=template)


def digest(w: Withdrawal) -> bytes:
    return hashlib.sha256((w.template or "").encode()).digest()


def test_frost_signer_with_an_invalid_share_signer() -> None:
    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 3, 5)
    signer = FrostCommitteeSigner(
        keys, public, 3, digest, frost.KEY_PATH, faulty=1, strategy="invalid-share"
    )
    sig = bytes.fromhex(signer.sign(withdrawal(), "session-1"))
    key = public.group_public_key(frost.KEY_PATH)
    assert coincurve.PublicKeyXOnly(key).verify(sig, digest(withdrawal()))
    record = signer.records[-1]
    assert record.ok and set(record.culprits) <= set(record.detail["corrupted"])


def test_frost_signer_refuses_a_message_that_is_not_the_template() -> None:
    keys, public = frost.local_dkg(frost.Ciphersuite.ED25519, 2, 3)
    calls = iter(range(1000))

    def drifting(w: Withdrawal) -> bytes:  # the "template" changes under the signers' feet
        return hashlib.sha256(str(next(calls)).encode()).digest()

    signer = FrostCommitteeSigner(keys, public, 2, drifting, rotate_timeout=0.5)
    with pytest.raises(SigningTimeout):
        signer.sign(withdrawal(), "session-2")


def test_cggmp_signer_routes_around_a_silent_member() -> None:
    aux = stored_aux(5)
    shares = ecdsa.local_keygen(3, 5, aux)
    signer = CggmpCommitteeSigner(shares, 3, digest, silent={2})
    sig = bytes.fromhex(signer.sign(withdrawal(), "session-3"))
    recovered = coincurve.PublicKey.from_signature_and_message(
        sig, digest(withdrawal()), hasher=None
    )
    assert address_bytes(recovered.format()) == address_bytes(shares[0].public_key)


def test_frost_signer_with_one_silent_and_one_lying_member() -> None:
    keys, public = frost.local_dkg(frost.Ciphersuite.ED25519, 3, 5)
    signer = FrostCommitteeSigner(
        keys, public, 3, digest, corrupt={4: "silent", 5: "invalid-share"}
    )
    for i in range(3):
        sig = bytes.fromhex(signer.sign(withdrawal(f'{{"n":{i}}}'), f"s-{i}"))
        frost.verify(
            public.suite, public.group_public_key(), digest(withdrawal(f'{{"n":{i}}}')), sig
        )
    # The liar is named (whenever it got into a sub-session), nobody else ever is.
    assert {c for r in signer.records for c in r.culprits} == {5}


def test_frost_signer_signs_one_message_per_input() -> None:
    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)

    def per_input(w: Withdrawal) -> list[bytes]:
        return [
            hashlib.sha256(b"input %d" % i + (w.template or "").encode()).digest() for i in range(3)
        ]

    signer = FrostCommitteeSigner(keys, public, 2, per_input, frost.KEY_PATH)
    refs = signer.sign(withdrawal(), "multi").split(",")
    key = public.group_public_key(frost.KEY_PATH)
    assert len(refs) == 3
    for sig, msg in zip(refs, per_input(withdrawal()), strict=True):
        assert coincurve.PublicKeyXOnly(key).verify(bytes.fromhex(sig), msg)
