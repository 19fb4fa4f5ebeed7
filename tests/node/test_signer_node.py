"""`SignerNode` over the simulator's transport: the production member, driven by virtual
time, signing with faulty peers, rotating past a silent aggregator, running DKGs for both
suites and a CGGMP keygen + signing around a stalled member. Signatures are checked by
independent libraries (libsecp256k1 via coincurve, libsodium via PyNaCl)."""

from __future__ import annotations

import hashlib
import random

import coincurve
import nacl.signing
import pytest

from synod.crypto import ecdsa, frost
from synod.node import KeyRing, SessionKind, SessionStatus
from synod.protocols.roast import aggregator_candidates
from synod.sim.adversary import Adversary, ByzantineFactory
from synod.sim.cluster import Cluster
from synod.state.session_store import SessionStore
from tests.fixtures import load_primes
from tests.node.helpers import ecdsa_keyed_cluster

MESSAGE = hashlib.sha256(b"withdrawal template").digest()
SID = hashlib.sha256(b"signing session").digest()


def frost_cluster(
    t: int,
    n: int,
    corrupt: dict[int, str] | None = None,
    suite: frost.Ciphersuite = frost.Ciphersuite.SECP256K1_TR,
    seed: int = 1,
) -> tuple[Cluster, frost.PublicKeyPackage]:
    keys, public = frost.local_dkg(suite, t, n)
    rings = {i: KeyRing() for i in keys}
    for i, ring in rings.items():
        ring.add_frost("k", keys[i], public)
    adversary = Adversary.fixed(dict(corrupt or {}), random.Random(seed))
    factories = {i: ByzantineFactory(adversary) for i in corrupt or {}}
    return Cluster(keys, seed=seed, keys=rings, factories=factories), public


def start_signing(cluster: Cluster, members: list[int], rotate: float = 2.0) -> None:
    for i in members:
        cluster.nodes[i].signer.start_signing(
            "k",
            SID,
            MESSAGE,
            lambda s, m: s == SID and m == MESSAGE,
            cluster.net.now,
            tweak=frost.KEY_PATH,
            rotate_timeout=rotate,
            start=0.0,
        )
        cluster.flush(i)


def verify_bip340(public: frost.PublicKeyPackage, signature: bytes) -> bool:
    key = public.group_public_key(frost.KEY_PATH)
    return bool(coincurve.PublicKeyXOnly(key).verify(signature, MESSAGE))


def test_signs_with_a_silent_and_a_lying_member() -> None:
    candidates = aggregator_candidates(SID, 1, (1, 2, 3, 4, 5))
    liar, mute = candidates[1], candidates[2]  # neither is the first aggregator
    cluster, public = frost_cluster(3, 5, {liar: "invalid-share"})
    cluster.nodes[mute].silent = True
    honest = [i for i in cluster.nodes if i not in (liar, mute)]
    start_signing(cluster, list(cluster.nodes))
    cluster.run_until(60.0, [(i, SID) for i in honest])
    results = [cluster.nodes[i].signer.result(SID) for i in honest]
    assert all(r is not None and r.status is SessionStatus.DONE for r in results)
    signatures = {r.signature for r in results if r is not None}
    assert len(signatures) == 1
    signature = signatures.pop()
    assert signature is not None and verify_bip340(public, signature)
    aggregator = cluster.nodes[candidates[0]].signer.result(SID)
    assert aggregator is not None and aggregator.kind is SessionKind.FROST_SIGN
    assert liar not in aggregator.signers and mute not in aggregator.signers
    # The liar was named only if it got into a sub-session; no honest member ever is.
    assert aggregator.culprits <= {liar}


def test_rotates_past_a_silent_aggregator() -> None:
    candidates = aggregator_candidates(SID, 1, (1, 2, 3, 4, 5))
    cluster, public = frost_cluster(3, 5)
    cluster.nodes[candidates[0]].silent = True
    start_signing(cluster, list(cluster.nodes), rotate=2.0)
    waiting = [(i, SID) for i in cluster.nodes if i != candidates[0]]
    cluster.run_until(60.0, waiting)
    result = cluster.nodes[candidates[1]].signer.result(SID)
    assert result is not None and result.status is SessionStatus.DONE
    assert result.aggregator == candidates[1]
    assert cluster.net.now >= 2.0  # the first turn had to pass
    assert result.signature is not None and verify_bip340(public, result.signature)
    turns = cluster.nodes[candidates[1]].signer.turns(SID)
    assert turns is not None and list(turns.turns) == [1]


def test_a_node_refuses_a_message_its_validator_rejects() -> None:
    cluster, _ = frost_cluster(2, 3)
    for i in cluster.nodes:
        cluster.nodes[i].signer.start_signing(
            "k", SID, MESSAGE, lambda s, m: False, 0.0, rotate_timeout=2.0, timeout=5.0
        )
        cluster.flush(i)
    cluster.net.run(10.0)
    for i, host in cluster.nodes.items():
        result = host.signer.result(SID)
        assert result is not None and result.status is SessionStatus.FAILED
        assert result.reason == "timeout: template_mismatch" and result.signature is None
        store = host.signer.nonces
        assert isinstance(store, SessionStore)
        assert store.raw_nonce_rows() == [], f"node {i} made a nonce for a refused message"
        assert any(e.name == "refused" for e in host.events)


def test_begin_is_idempotent_and_garbage_is_a_counted_drop() -> None:
    cluster, _ = frost_cluster(2, 3)
    node = cluster.nodes[1].signer
    start_signing(cluster, [1])
    first = node.result(SID)
    start_signing(cluster, [1])
    assert node.result(SID) is first and len(node.results()) == 1
    node.on_message(b"\x00not an envelope", 0.1)
    node.on_message(b"", 0.1)
    assert node.router.counters["malformed"] == 2


@pytest.mark.parametrize("suite", list(frost.Ciphersuite))
def test_dkg_then_signing_with_the_new_key(suite: frost.Ciphersuite) -> None:
    ids = (1, 2, 3, 4)
    cluster = Cluster(ids, seed=3)
    dkg_sid = hashlib.sha256(b"dkg" + suite.value.encode()).digest()
    for i in ids:
        cluster.nodes[i].signer.start_dkg("new", dkg_sid, ids, 3, suite, 0.0, timeout=10.0)
        cluster.flush(i)
    cluster.run_until(20.0, [(i, dkg_sid) for i in ids])
    results = [cluster.nodes[i].signer.result(dkg_sid) for i in ids]
    assert all(r is not None and r.status is SessionStatus.DONE for r in results)
    assert len({r.public_key for r in results if r is not None}) == 1
    for i in ids:
        assert cluster.nodes[i].signer.keys.key_ids() == ["new"]
    # The stored shares sign through the nodes.
    tweak = frost.KEY_PATH if suite is frost.Ciphersuite.SECP256K1_TR else None
    for i in ids:
        cluster.nodes[i].signer.start_signing(
            "new", SID, MESSAGE, lambda s, m: m == MESSAGE, cluster.net.now, tweak=tweak
        )
        cluster.flush(i)
    cluster.run_until(cluster.net.now + 30.0, [(i, SID) for i in ids])
    signed = cluster.nodes[1].signer.result(SID)
    assert signed is not None and signed.signature is not None
    public = cluster.nodes[1].signer.keys.frost_share("new").public
    key = public.group_public_key(tweak)
    if suite is frost.Ciphersuite.SECP256K1_TR:
        assert coincurve.PublicKeyXOnly(key).verify(signed.signature, MESSAGE)
    else:
        nacl.signing.VerifyKey(key).verify(MESSAGE, signed.signature)


def test_cggmp_keygen_then_signing_around_a_stalled_member() -> None:
    ids = (1, 2, 3)
    cluster, public_key = ecdsa_keyed_cluster(ids, seed=4)

    candidates = aggregator_candidates(SID, 1, ids)
    stalled = sorted(candidates[:2])[-1]  # a member of the first attempt's subset
    cluster.nodes[stalled].silent = True
    start = cluster.net.now
    for i in ids:
        cluster.nodes[i].signer.start_ecdsa_signing(
            "eth", SID, MESSAGE, lambda s, m: m == MESSAGE, start, attempt_timeout=5.0
        )
        cluster.flush(i)
    honest = [i for i in ids if i != stalled]
    cluster.run_until(start + 60.0, [(i, SID) for i in honest])
    result = cluster.nodes[honest[0]].signer.result(SID)
    assert result is not None and result.status is SessionStatus.DONE, result
    assert result.signature is not None
    sig = ecdsa.Signature.from_recoverable(result.signature)
    assert stalled not in result.signers or result.signers == ()
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(sig.to_bytes()))
    assert coincurve.PublicKey(public_key).verify(der, MESSAGE, hasher=None)


def test_reshare_moves_the_key_to_a_new_committee() -> None:
    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)
    old, new = (1, 3), (3, 4, 5)
    rings = {i: KeyRing() for i in (1, 2, 3, 4, 5)}
    for i in (1, 2, 3):
        rings[i].add_frost("k", keys[i], public)
    cluster = Cluster(rings, seed=6, keys=rings)
    sid = b"reshare"
    for i in (1, 3, 4, 5):
        cluster.nodes[i].signer.start_reshare("k", sid, old, new, 2, public, 0.0, timeout=10.0)
        cluster.flush(i)
    cluster.run_until(12.0, [(i, sid) for i in (1, 3, 4, 5)])
    for i in (1, 3, 4, 5):
        r = cluster.nodes[i].signer.result(sid)
        assert r is not None and r.status is SessionStatus.DONE, (i, r)
    assert cluster.nodes[1].signer.keys.key_ids() == []  # left the committee: share dropped
    shares = {i: cluster.nodes[i].signer.keys.frost_share("k") for i in new}
    assert all(s.public.verifying_key() == public.verifying_key() for s in shares.values())
    sig = frost.local_sign(
        {i: s.key_package for i, s in shares.items()}, shares[4].public, MESSAGE, [4, 5]
    )
    assert coincurve.PublicKeyXOnly(public.group_public_key()).verify(sig.raw, MESSAGE)


def test_cggmp_aux_info_keygen_and_presignatures_over_the_network() -> None:
    """The whole ECDSA setup among members: aux info from each member's own (stored, test
    only) primes, a 2-of-3 keygen on it, then one presignature per signer of a subset; the
    presignatures complete a signature that libsecp256k1 accepts under the group key."""
    ids = (1, 2, 3)
    primes = load_primes()[: len(ids)]
    cluster = Cluster(ids, seed=7)
    aux_sid, keygen_sid, presign_sid = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32
    for i in ids:
        cluster.nodes[i].signer.start_aux_info(aux_sid, ids, primes[i - 1], 0.0)
        cluster.flush(i)
    cluster.run_until(600.0, [(i, aux_sid) for i in ids])
    aux = [cluster.nodes[i].signer.result(aux_sid) for i in ids]
    assert all(r is not None and r.status is SessionStatus.DONE for r in aux), aux
    start = cluster.net.now
    for i in ids:
        own = cluster.nodes[i].signer.result(aux_sid)
        assert own is not None and isinstance(own.output, ecdsa.AuxInfo)
        cluster.nodes[i].signer.start_ecdsa_keygen("eth", keygen_sid, ids, 2, own.output, start)
        cluster.flush(i)
    cluster.run_until(start + 120.0, [(i, keygen_sid) for i in ids])
    public_key = cluster.nodes[1].signer.keys.ecdsa_share("eth").public_key

    signers = (1, 3)
    start = cluster.net.now
    for i in signers:
        cluster.nodes[i].signer.start_presign("eth", presign_sid, signers, start)
        cluster.flush(i)
    cluster.run_until(start + 120.0, [(i, presign_sid) for i in signers])
    partials = []
    for i in signers:
        result = cluster.nodes[i].signer.result(presign_sid)
        assert result is not None and result.status is SessionStatus.DONE, result
        assert isinstance(result.output, ecdsa.Presignature)
        partials.append(result.output.sign(MESSAGE))
    sig = ecdsa.combine(partials, MESSAGE, public_key)
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(sig.to_bytes()))
    assert coincurve.PublicKey(public_key).verify(der, MESSAGE, hasher=None)
