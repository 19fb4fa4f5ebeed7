"""The FROST benchmark paths run end to end at a small size (no timing is asserted): the
per-member DKG bench finishes a real DKG in which two members derive the same public key
package and the crate's own last step agrees, and the signer bench's round 2 signs; the
cluster bench starts member processes, runs a DKG over their control services and times
signatures that it checks against the group key."""

from __future__ import annotations

from synod.bench.cluster import cluster_latencies
from synod.bench.dkg import dkg_node_rows
from synod.bench.frost import SIGNER_ROUND2, signer_rows
from synod.crypto import frost


def test_dkg_member_bench_runs_a_real_dkg() -> None:
    rows = dkg_node_rows([(3, 5)], [frost.Ciphersuite.ED25519], crate_checks=True)
    ops = [r.operation for r in rows]
    assert "dkg member: round 3 (crate's checks)" in ops
    assert ops[-1] == "dkg member: in all (CPU)"
    assert all(r.params == "3/5" and r.seconds >= 0 for r in rows)


def test_signer_bench_signs_from_received_bytes() -> None:
    rows = signer_rows([(3, 5)])
    assert {r.suite for r in rows} == {"frost-secp256k1-tr", "frost-ed25519"}
    assert all(r.operation == SIGNER_ROUND2 for r in rows)


def test_cluster_bench_times_verified_signatures() -> None:
    (row,) = cluster_latencies(2, 3, 3, lambda _msg: None, ("ed25519",))
    assert row.scheme == "ed25519" and row.params == "2/3" and len(row.samples) == 3
