"""CGGMP signing over the simulated network: a stalled signer makes the attempt time out, the
next leader picks a subset without it, and the signature verifies with libsecp256k1 and by
Ethereum address recovery."""

from __future__ import annotations

import coincurve
import pytest

from synod.chains.evm.address import address_bytes, keccak256
from synod.crypto import ecdsa
from synod.protocols.cggmp import DRIVER_KINDS, PRIVATE, CggmpSigningDriver
from synod.protocols.roast import AggregatorSchedule
from synod.sim.cluster import Cluster
from tests.fixtures import stored_aux

DIGEST = keccak256(b"withdrawal template")


@pytest.fixture(scope="module")
def shares() -> list[ecdsa.KeyShare]:
    """Keygen runs live; aux info for n = 5 comes from the TEST-ONLY store (about 70 s to redo)."""
    aux = stored_aux(5)
    return ecdsa.local_keygen(3, 5, aux)


def run(
    shares: list[ecdsa.KeyShare], silent: set[int], seed: int = 1
) -> tuple[Cluster, dict[int, CggmpSigningDriver]]:
    committee = (1, 2, 3, 4, 5)
    cluster = Cluster(committee, seed=seed)
    schedule = AggregatorSchedule(b"cggmp-session", 1, committee, 0.0, 5.0)
    drivers = {}
    for node in committee:
        cluster.nodes[node].silent = node in silent
        d = CggmpSigningDriver(
            schedule, node, 3, shares[node - 1], DIGEST, lambda s, m: m == DIGEST
        )
        drivers[node] = d
        cluster.start(node, d, DRIVER_KINDS, PRIVATE)
    honest = [d for n, d in drivers.items() if n not in silent]
    cluster.run(60.0, honest)
    return cluster, drivers


def check(sig: ecdsa.Signature, public_key: bytes) -> None:
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(sig.to_bytes()))
    assert coincurve.PublicKey(public_key).verify(der, DIGEST, hasher=None)
    recovered = coincurve.PublicKey.from_signature_and_message(
        sig.to_recoverable(), DIGEST, hasher=None
    )
    assert address_bytes(recovered.format()) == address_bytes(public_key)


def test_signs_without_faults(shares: list[ecdsa.KeyShare]) -> None:
    _, drivers = run(shares, set())
    sigs = {d.signature.to_bytes() for d in drivers.values() if d.signature}
    assert len(sigs) == 1
    check(next(iter(drivers.values())).signature, shares[0].public_key)  # type: ignore[arg-type]


def test_stalled_signer_is_routed_around(shares: list[ecdsa.KeyShare]) -> None:
    schedule = AggregatorSchedule(b"cggmp-session", 1, (1, 2, 3, 4, 5), 0.0, 5.0)
    first_subset = sorted(schedule.candidates[:3])
    stalled = first_subset[-1]
    cluster, drivers = run(shares, {stalled})
    done = [d for n, d in drivers.items() if n != stalled]
    assert all(d.signature is not None for d in done)
    attempts = {
        ev.data["attempt"] for n in cluster.nodes.values() for ev in n.events if ev.name == "signed"
    }
    assert min(attempts) >= 1  # the first attempt could not finish
    signers = next(
        ev.data["signers"]
        for n in cluster.nodes.values()
        for ev in n.events
        if ev.name == "signed" and "signers" in ev.data
    )
    assert stalled not in signers
    check(done[0].signature, shares[0].public_key)  # type: ignore[arg-type]


def test_keygen_and_presign_runs_over_the_network(shares: list[ecdsa.KeyShare]) -> None:
    from synod.protocols.cggmp import RUN_KINDS, CggmpRun

    committee = (1, 2, 3)
    cluster = Cluster(committee, seed=4)
    eid = b"\x07" * 32
    runs = {
        n: CggmpRun(
            b"keygen",
            1,
            n,
            committee,
            committee,
            lambda n=n: ecdsa.KeygenSession(eid, n - 1, 3, 2),
            30.0,
        )
        for n in committee
    }
    for n, r in runs.items():
        cluster.start(n, r, RUN_KINDS, PRIVATE)
    cluster.run(30.0, runs.values())
    keys = {r.output.public_key for r in runs.values()}
    assert len(keys) == 1 and all(not r.failed for r in runs.values())

    # Presignatures for signers 2 and 4 (keygen indices 1 and 3) of the 3-of-5 key.
    committee5 = (1, 2, 3, 4, 5)
    cluster = Cluster(committee5, seed=5)
    peid = b"\x08" * 32
    presign = {
        n: CggmpRun(
            b"presign",
            1,
            n,
            committee5,
            (2, 3, 4),
            lambda n=n: ecdsa.PresignSession(peid, shares[n - 1], [1, 2, 3]),
            30.0,
        )
        for n in (2, 3, 4)
    }
    for n, r in presign.items():
        cluster.start(n, r, RUN_KINDS, PRIVATE)
    cluster.run(30.0, presign.values())
    partials = [ecdsa.sign_with_presignature(r.output, DIGEST) for r in presign.values()]
    check(ecdsa.combine(partials, DIGEST, shares[0].public_key), shares[0].public_key)
