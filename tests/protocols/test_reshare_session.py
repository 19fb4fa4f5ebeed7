"""Resharing over the simulated network: same group key, new threshold, old shares retired only
after the new threshold acknowledged; a lying old signer is named and nothing is retired."""

from __future__ import annotations

import coincurve

from synod.crypto import frost
from synod.protocols.base import Send
from synod.protocols.reshare import KINDS, PRIVATE, SHARE, ReshareSession
from synod.sim.cluster import Cluster

SID = b"reshare-1"


def setup(old_signers, new_ids, new_t, cls=ReshareSession):  # type: ignore[no-untyped-def]
    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, 2, 3)
    cluster = Cluster(set(old_signers) | set(new_ids), seed=5)
    sessions = {}
    for node in cluster.nodes:
        s = cls(
            SID, 1, node, tuple(old_signers), tuple(new_ids), new_t, public, keys.get(node), 10.0
        )
        sessions[node] = s
    for node, s in sessions.items():
        cluster.start(node, s, KINDS, PRIVATE)
    cluster.run(12.0, sessions.values())
    return keys, public, cluster, sessions


def test_reshare_activates_new_and_retires_old() -> None:
    old, new = (1, 3), (3, 4, 5, 6)
    _, public, cluster, sessions = setup(old, new, 3)
    new_keys = {}
    for j in new:
        assert cluster.first(j, "activated") is not None
        new_keys[j] = sessions[j].key_package
        assert sessions[j].public_key_package.verifying_key() == public.verifying_key()
    for i in old:
        assert cluster.first(i, "retire_old_share") is not None
    new_public = sessions[4].public_key_package
    sig = frost.local_sign(new_keys, new_public, b"m" * 32, [4, 5, 6])
    assert coincurve.PublicKeyXOnly(public.group_public_key()).verify(sig.raw, b"m" * 32)


class LyingOldSigner(ReshareSession):
    """Old signer 2 sends one new signer the sub-share meant for another."""

    def start(self, now: float) -> list[Send]:
        sends = super().start(now)
        if self.me != 2:
            return sends
        first, second = [s for s in sends if s.kind == SHARE][:2]
        return [s for s in sends if s is not first] + [
            Send(first.to, SHARE, 1, second.payload, private=True)
        ]


def test_bad_subshare_below_new_threshold_retires_nothing() -> None:
    old, new = (1, 2), (4, 5, 6)
    _, _, cluster, _ = setup(old, new, 3, LyingOldSigner)  # all three new acks needed
    victim = [
        j
        for j in new
        if cluster.first(j, "aborted") is not None and cluster.first(j, "key_ready") is None
    ]
    assert len(victim) == 1
    assert cluster.first(victim[0], "aborted").data["culprits"] == [2]
    assert all(cluster.first(i, "retire_old_share") is None for i in old)
    assert all(cluster.first(j, "activated") is None for j in new)
    for j in new:
        if j != victim[0]:
            assert cluster.first(j, "complaint").data["accused"] == [2]


def test_bad_subshare_with_enough_good_acks_activates_and_records_complaint() -> None:
    old, new = (1, 2), (4, 5, 6)
    _, _, cluster, _ = setup(old, new, 2, LyingOldSigner)
    activated = [j for j in new if cluster.first(j, "activated") is not None]
    assert len(activated) == 2
    assert all(cluster.first(i, "retire_old_share") is not None for i in old)
    (victim,) = set(new) - set(activated)
    assert cluster.first(victim, "aborted").data["culprits"] == [2]
