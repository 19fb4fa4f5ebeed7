"""The FROST DKG session over the simulated network: success, and clean aborts naming culprits."""

from __future__ import annotations

import coincurve
import pytest

from synod.crypto import frost
from synod.sim.dkg import DkgRun


@pytest.mark.parametrize("suite", list(frost.Ciphersuite))
def test_all_parties_derive_the_same_key_and_it_signs(suite: frost.Ciphersuite) -> None:
    run = DkgRun(3, 5, seed=2, suite=suite)
    run.execute()
    outcomes = [run.outcome(i) for i in run.nodes]
    assert all(o["event"] == "key_ready" for o in outcomes)
    publics = {o["public_key_package"].raw for o in outcomes}
    assert len(publics) == 1
    keys = {i: o["key_package"] for i, o in zip(run.nodes, outcomes, strict=True)}
    public = outcomes[0]["public_key_package"]
    sig = frost.local_sign(keys, public, b"m" * 32, [1, 4, 5])
    if suite is frost.Ciphersuite.SECP256K1_TR:
        assert coincurve.PublicKeyXOnly(public.group_public_key()).verify(sig.raw, b"m" * 32)


def test_bad_share_aborts_naming_its_sender() -> None:
    run = DkgRun(2, 4, seed=3, byzantine={3: "bad-share"})
    run.execute()
    honest = [run.outcome(i) for i in (1, 2, 4)]
    assert all(o["event"] == "aborted" and o["culprits"] == [3] for o in honest), honest
    # The victim found the bad share itself; the others abort on its accusation.
    assert sum(o["reason"] == "invalid" for o in honest) == 1


def test_equivocating_round1_is_caught_before_shares_are_sent() -> None:
    run = DkgRun(2, 4, seed=4, byzantine={2: "equivocate"})
    run.execute()
    for i in (1, 3, 4):
        o = run.outcome(i)
        assert o["event"] == "aborted"
        assert 2 in o["culprits"]


def test_silent_party_times_out_and_is_named() -> None:
    run = DkgRun(2, 4, seed=5, byzantine={4: "silent"}, deadline=3.0)
    run.execute()
    for i in (1, 2, 3):
        o = run.outcome(i)
        assert o["event"] == "aborted" and o["reason"] == "timeout"
        assert o["culprits"] == [4]
